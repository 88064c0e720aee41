"""Optimizers and the two learning-rate schedules of the original code, stepped once per epoch.

A script states its schedule with its own option values (`StepDecay(args.lr_decay_step,
args.lr_decay_ratio)`, `WarmupCosine(args.warmup_epochs)`); the trial builds it on the trial's optimizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, StepLR

WEIGHT_DECAY = 5e-4
# The original called a cosine-with-warm-up schedule with 1e8 total steps and stepped it per epoch,
# so after the warm-up the cosine part never moves: the factor is e/warmup for epoch e+1, then ~1.
ORIGINAL_TOTAL_STEPS = 100_000_000


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """adam / adamw / sgd (momentum 0.9), all with weight decay 5e-4, over the student's parameters."""
    params = [p for p in params if p.requires_grad]
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=WEIGHT_DECAY)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=WEIGHT_DECAY)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=WEIGHT_DECAY)
    raise ValueError(f"unknown optimizer {name!r}")


@dataclass(frozen=True)
class StepDecay:
    """AVMNIST: StepLR, the learning rate times `ratio` every `step` epochs."""

    step: int
    ratio: float

    def build(self, optimizer: torch.optim.Optimizer) -> LRScheduler:
        return StepLR(optimizer, step_size=self.step, gamma=self.ratio)


@dataclass(frozen=True)
class WarmupCosine:
    """IEMOCAP: linear warm-up over `warmup_epochs` (epoch 1 at lr 0 when > 0), then half a cosine over
    `total_steps` epochs."""

    warmup_epochs: int
    total_steps: int = ORIGINAL_TOTAL_STEPS

    def factor(self, step: int) -> float:
        if step < self.warmup_epochs:
            return step / self.warmup_epochs
        progress = (step - self.warmup_epochs) / max(1, self.total_steps - self.warmup_epochs)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def build(self, optimizer: torch.optim.Optimizer) -> LRScheduler:
        return LambdaLR(optimizer, self.factor)
