"""Which teacher input each training sample is paired with.

Training draws are made in the main process from the trial's partner generator, O(1) per sample,
so they never depend on DataLoader workers, and a `--lam 0` run (no draws) keeps the same batch order.
Validation and test always use the sample's own (paired) teacher input.
"""

from __future__ import annotations

import numpy as np

from utils.experiment import InputError


def draw_unpaired_partners(positions: np.ndarray, pool_size: int, rng: np.random.Generator) -> np.ndarray:
    """For each position in 0..pool_size-1, a uniformly drawn *other* position of the pool."""
    if pool_size < 2:
        raise InputError(f"unpaired partners need at least 2 training samples, the training split has {pool_size}")
    draws = rng.integers(0, pool_size - 1, size=len(positions))
    return draws + (draws >= positions)  # skip the sample itself without rejection


class OtherSamplePartners:
    """AVMNIST and A->T: the teacher sees the other modality of another training sample."""

    def __init__(self, train_keys: np.ndarray, rng: np.random.Generator) -> None:
        self.train_keys, self.rng = np.asarray(train_keys), rng

    def draw(self, positions: np.ndarray) -> np.ndarray:
        return self.train_keys[draw_unpaired_partners(positions, len(self.train_keys), self.rng)]

    def possible_keys(self) -> np.ndarray:
        return self.train_keys


class TemplatePartners:
    """T->A: the teacher reads the template sentence of a uniformly drawn class number k."""

    def __init__(self, template_keys: np.ndarray, rng: np.random.Generator) -> None:
        self.template_keys, self.rng = np.asarray(template_keys), rng

    def draw(self, positions: np.ndarray) -> np.ndarray:
        return self.template_keys[self.rng.integers(0, len(self.template_keys), size=len(positions))]

    def possible_keys(self) -> np.ndarray:
        return self.template_keys


class PairedPartners:
    """`--pairing paired` (ablation): each sample's own other modality."""

    def __init__(self, train_keys: np.ndarray) -> None:
        self.train_keys = np.asarray(train_keys)
        self.rng = None  # draws nothing

    def draw(self, positions: np.ndarray) -> np.ndarray:
        return self.train_keys[positions]

    def possible_keys(self) -> np.ndarray:
        return self.train_keys


Partners = OtherSamplePartners | TemplatePartners | PairedPartners


def training_partners(pairing: str, train_keys: np.ndarray, unpaired_pool: np.ndarray | None,
                      rng: np.random.Generator) -> Partners:
    """A trial's training partners: with `--pairing paired` the sample's own teacher input; unpaired, a
    uniform draw from `unpaired_pool` (T->A's template sentences) or, without a pool, another training sample."""
    if pairing == "paired":
        return PairedPartners(train_keys)
    if unpaired_pool is not None:
        return TemplatePartners(unpaired_pool, rng)
    return OtherSamplePartners(train_keys, rng)
