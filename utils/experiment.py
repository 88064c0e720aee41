"""What a script hands to the shared run: its experiment, its student, its data as splits and batches, its
teacher and the teacher's inputs, and the two ways a run ends on purpose (bad input, a diverged trial).

These types live in the lowest layer of `utils/`, so that `datasets/` and `models/` implement them and the
run uses them without either importing the other.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Protocol

if TYPE_CHECKING:  # annotations only: `python -m utils.report` imports the errors without torch
    import numpy as np
    import torch
    from torch.utils.data import Dataset


class InputError(Exception):
    """Bad user input: a missing path or file, a wrong shape, dtype or label, unavailable weights. The message
    names what is wrong and what was expected, in one line; the run ends with exit code 2."""

    exit_code = 2


class NonFiniteLossError(Exception):
    """A loss or a prediction became NaN or infinite; the run ends with exit code 1."""

    exit_code = 1


class Batch(NamedTuple):
    """What every collate function returns."""

    inputs: dict[str, torch.Tensor | np.ndarray]  # keyword arguments of the student's forward; arrays stay on the host
    labels: torch.Tensor
    positions: np.ndarray  # each sample's index in its split, on the host (it picks the teacher's inputs)


@dataclass
class Split:
    """One split of a trial: the student's dataset (items end with their position) and each position's own
    (paired) teacher-input key."""

    dataset: Dataset
    teacher_keys: np.ndarray


class SplitSource(Protocol):
    """How an experiment's data is split for a trial: drawn (seeded) or rebuilt from a recorded split."""

    def draw(self, rng: np.random.Generator) -> dict[str, list]:
        """A new JSON-able split record {"train", "val", "test"}, from the trial's split generator."""

    def build(self, record: dict[str, list]) -> dict[str, Split]:
        """The three splits of a record, after checking that it fits the data (it may come from --split_file)."""


class Teacher(Protocol):
    """A frozen model that maps a list of raw inputs to a B x dim float32 tensor on its device."""

    dim: int
    identity: str  # changes whenever the weights change: part of the disk-cache key
    # How many inputs the feature cache computes in one forward (fixed blocks of keys): 1 for a teacher whose
    # feature of an input depends on its batch-mates.
    cache_block: int

    def encode(self, inputs: list[Any]) -> torch.Tensor: ...

    def to(self, device: torch.device) -> Teacher: ...


class TeacherInputs(Protocol):
    """The teacher's inputs by key (an integer naming one input of the run: an AVMNIST item, an IEMOCAP
    utterance, a template sentence), and a fingerprint that changes whenever the data does."""

    fingerprint: str

    def __len__(self) -> int: ...

    def __getitem__(self, key: int) -> Any: ...


class Schedule(Protocol):
    """An experiment's learning-rate schedule with its own option values, stepped once per epoch."""

    def build(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler: ...


class StudentModel(Protocol):
    """A student: an `nn.Module` whose forward(**batch.inputs) returns (logits B x C, feature B x D)."""

    # The fewest samples a training batch may hold (a ResNet's BatchNorm over a 1x1 feature map needs 2).
    min_batch: int
    # Whether a training step may leave out whole layers (LayerDrop), and so their parameters: several processes
    # then need DistributedDataParallel's search for unused parameters.
    skips_layers: bool

    def __call__(self, **inputs: Any) -> tuple[torch.Tensor, torch.Tensor]: ...


class Student(NamedTuple):
    """A freshly initialised student and the collate function that batches its inputs."""

    model: StudentModel
    collate: Callable[[list], Batch]


@dataclass(frozen=True)
class Experiment:
    """One experiment, as its script wires it; `utils.run` runs its trials."""

    tag: str  # e.g. "AVMNIST V->A", the last word of the summary line
    num_classes: int
    feature_dim: int  # D: the teacher's output size, whatever lam is
    splits: SplitSource  # draws a trial's split, or rebuilds a recorded one
    # Called once per trial, right after seeding, so that runs with any lam start from the same weights.
    build_student: Callable[[argparse.Namespace, int], Student]
    schedule: Schedule  # e.g. utils.optim.StepDecay(25, 0.1)
    teacher: Teacher | None = None  # None when lam = 0: no teacher is loaded
    teacher_inputs: TeacherInputs | None = None  # the teacher's input of every key
    # Unpaired training partners are drawn from these teacher keys (T->A: the template sentences);
    # None means another sample of the training split (AVMNIST, A->T).
    unpaired_pool: np.ndarray | None = None
    detailed_metrics: bool = False  # IEMOCAP: also UAR, macro-F1 and the confusion matrix
    # Training samples over which a student with BatchNorm gets precise statistics before every
    # evaluation (utils/precise_bn.py); 0 keeps the running averages of training.
    precise_bn: int = 0
