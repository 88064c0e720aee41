"""Seeding: one call for every global generator, and one private generator per purpose.

The split, the batch order, the partner draws, the precise-BatchNorm sample and the training loader's
worker seeds each get a generator derived from the trial seed, so that `--lam 0` and `--lam 0.3` runs
with the same seed share the split, the student's initial weights (built right after `set_seed`) and the
batch order: the comparison is paired.

The batch order is the same whatever `--num_workers` is (the DataLoader takes its worker seeds from a
generator of its own) and however many processes share the batches, so the batch order of a run, of a
resumed run and of a run of several processes is the same.
"""

from __future__ import annotations

import os
import random
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

# Fixed stream ids: changing one changes every recorded split or draw.
_SPLIT, _BATCH_ORDER, _PARTNERS, _PRECISE_BN, _LOADER = 1, 2, 3, 4, 5


def set_seed(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices); optionally force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; set before the first CUDA matmul.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def split_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SPLIT])


def partner_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, _PARTNERS])


def precise_bn_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, _PRECISE_BN])


def _torch_generator(seed: int, stream: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def batch_order_generator(seed: int) -> torch.Generator:
    return _torch_generator(seed, _BATCH_ORDER)


def loader_generator(seed: int) -> torch.Generator:
    """The training loader's own generator: it seeds the DataLoader's workers (one draw per pass)."""
    return _torch_generator(seed, _LOADER)


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

