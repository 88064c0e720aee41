"""Seeding: one call for every global generator, and one private generator per purpose.

The split, the batch order and the partner draws each get a generator derived from the trial seed,
so that `--lam 0` and `--lam 0.3` runs with the same seed share the split, the student's initial
weights (built right after `set_seed`) and the batch order: the comparison is paired.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

# Fixed stream ids: changing one changes every recorded split or draw.
_SPLIT, _BATCH_ORDER, _PARTNERS, _PRECISE_BN = 1, 2, 3, 4


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


def batch_order_generator(seed: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, _BATCH_ORDER]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))
