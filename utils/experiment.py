"""What a script hands to the shared run: its data, its teacher and how each trial's student is made."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
from torch import nn

from utils.data import Batch, SplitSource
from utils.teacher_features import Teacher, TeacherInputs


class Student(NamedTuple):
    """A freshly initialised student and the collate function that batches its inputs."""

    model: nn.Module  # forward(**batch.inputs) -> (logits B x C, feature B x D)
    collate: Callable[[list], Batch]


@dataclass(frozen=True)
class Experiment:
    """One experiment, as its script wires it; `utils.run.run_experiment` runs its trials."""

    tag: str  # e.g. "AVMNIST V->A", the last word of the summary line
    num_classes: int
    feature_dim: int  # D: the teacher's output size, whatever lam is
    splits: SplitSource  # draws a trial's split, or rebuilds a recorded one
    # Called once per trial, right after seeding, so that runs with any lam start from the same weights.
    build_student: Callable[[argparse.Namespace, int], Student]
    schedule: str  # "step" (StepLR, AVMNIST) or "warmup_cosine" (the original IEMOCAP schedule)
    teacher: Teacher | None = None  # None when lam = 0: no teacher is loaded
    teacher_inputs: TeacherInputs | None = None  # the teacher's input of every key
    # Unpaired training partners are drawn from these teacher keys (T->A: the template sentences);
    # None means another sample of the training split (AVMNIST, A->T).
    unpaired_pool: np.ndarray | None = None
    detailed_metrics: bool = False  # IEMOCAP: also UAR, macro-F1 and the confusion matrix
    # Training samples over which a student with BatchNorm gets precise statistics before every
    # evaluation (utils/precise_bn.py); 0 keeps the running averages of training.
    precise_bn: int = 0
