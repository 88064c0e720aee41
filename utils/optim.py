"""Optimizers and the two learning-rate schedules of the original code, stepped once per epoch."""

from __future__ import annotations

import math
from typing import Iterable

import torch

WEIGHT_DECAY = 5e-4


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


def step_schedule(optimizer: torch.optim.Optimizer, step_size: int, gamma: float) -> torch.optim.lr_scheduler.LRScheduler:
    """AVMNIST: StepLR(lr_decay_step, lr_decay_ratio)."""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


# The original called a cosine-with-warm-up schedule with 1e8 total steps and stepped it per epoch,
# so after the warm-up the cosine part never moves: the factor is e/warmup for epoch e+1, then ~1.
ORIGINAL_TOTAL_STEPS = 100_000_000


def warmup_cosine_schedule(optimizer: torch.optim.Optimizer, warmup_epochs: int,
                           total_steps: int = ORIGINAL_TOTAL_STEPS) -> torch.optim.lr_scheduler.LRScheduler:
    """IEMOCAP: linear warm-up over `warmup_epochs` (epoch 1 at lr 0 when > 0), then half a cosine."""

    def factor(step: int) -> float:
        if step < warmup_epochs:
            return step / warmup_epochs
        progress = (step - warmup_epochs) / max(1, total_steps - warmup_epochs)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
