"""The order of samples: each training epoch a permutation drawn from the trial's batch-order generator,
cut into global batches of which each process takes its share.

The draws are the same whatever `--num_workers` is (the DataLoader takes its worker seeds from a
generator of its own) and however many processes share the batches, so the batch order of a run, of a
resumed run and of a run of several processes is the same.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import BatchSampler, Sampler

from utils.distributed import share


class ShuffledEpochs(Sampler[int]):
    """Sample positions 0..n-1, a fresh permutation from `generator` each epoch."""

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n, self.generator = n, generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        # Before this sampler, each epoch drew from this generator one number for the DataLoader's worker
        # seed, the permutation, and a second permutation that torch's RandomSampler draws and slices to
        # nothing at the end of an epoch; draw them still, so that every run keeps its batch order.
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        yield from torch.randperm(self.n, generator=self.generator).tolist()
        torch.randperm(self.n, generator=self.generator)


class ShareOfEachBatch(Sampler[list[int]]):
    """This process's contiguous share of each global batch of `batch_size` samples of `sampler` (the whole
    batch in a single process); a share left empty (a last batch smaller than the processes) is skipped."""

    def __init__(self, sampler: Sampler[int], batch_size: int, drop_last: bool) -> None:
        self.batches = BatchSampler(sampler, batch_size, drop_last)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            mine = batch[share(len(batch))]
            if mine:
                yield mine
