"""The order of training samples: each epoch a permutation drawn from the trial's batch-order generator.

The draws are the same whatever `--num_workers` is (the DataLoader takes its worker seeds from a
generator of its own), so the batch order of a run, and of a resumed run, never depends on it.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


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
