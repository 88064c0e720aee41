"""What the training loop needs from a data set: batches, splits, and a way to draw and check splits.

These types live in `utils/`, the lowest layer, so that `datasets/` can implement them and the loop
can use them without either importing the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset


class Batch(NamedTuple):
    """What every collate function returns."""

    inputs: dict[str, torch.Tensor]  # keyword arguments of the student's forward
    labels: torch.Tensor
    positions: torch.Tensor  # each sample's index in its split


@dataclass
class Split:
    """One split of a trial: the student's dataset (items end with their position) and each
    position's own (paired) teacher-input key."""

    dataset: Dataset
    teacher_keys: np.ndarray


class SplitSource(Protocol):
    """How an experiment's data is split for a trial: drawn (seeded) or rebuilt from a recorded split."""

    def draw(self, rng: np.random.Generator) -> dict[str, list]:
        """A new JSON-able split record {"train", "val", "test"}, from the trial's split generator."""

    def build(self, record: dict[str, list]) -> dict[str, Split]:
        """The three splits of a record, after checking that it fits the data (it may come from --split_file)."""
