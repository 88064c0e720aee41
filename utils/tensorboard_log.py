"""`--tensorboard`: what each trial logs for TensorBoard while it trains, in `trialK/tensorboard/`.

Per epoch (step = the epoch): the train and validation losses and accuracies (and UAR, macro-F1 where the
experiment reports them), the learning rate of the epoch and the training samples per second; per N training
steps (step = the global training step), the training loss averaged over those steps, from the losses the
epoch kept on the device and reads once at its end. When the trial has been tested, its hyperparameters and
its validation and test accuracy go to TensorBoard's HParams dashboard, where the trials of a lam sweep are
compared side by side. Only the first process writes; a resumed trial appends the epochs after its last saved
one, so no step is logged twice. tensorboard is imported here, and only with --tensorboard.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from utils.distributed import is_main

SMOOTHING_STEPS = 10  # training steps per point of the smoothed training loss
SPLIT_METRICS = ("cls_loss", "latent_loss", "acc", "uar", "macro_f1")


class TensorBoardLog:
    """The TensorBoard log of one trial (a no-op in every process but the first)."""

    def __init__(self, trial_dir: Path, train_loader: DataLoader) -> None:
        self.writer = None
        if is_main():
            from torch.utils.tensorboard import SummaryWriter  # only with --tensorboard: tensorboard is optional

            self.writer = SummaryWriter(str(trial_dir / "tensorboard"))
        batches = train_loader.batch_sampler
        samples = len(batches.sampler)
        self.samples = samples // batches.batch_size * batches.batch_size if batches.drop_last else samples
        self.steps = len(train_loader)

    def epoch(self, epoch: int, lr: float, train: dict, val: dict, train_seconds: float,
              step_losses: list[torch.Tensor]) -> None:
        if self.writer is None:
            return
        for split, metrics in (("train", train), ("val", val)):
            for name in SPLIT_METRICS:
                if metrics.get(name) is not None:
                    self.writer.add_scalar(f"{split}/{name}", metrics[name], epoch)
        self.writer.add_scalar("train/lr", lr, epoch)
        self.writer.add_scalar("train/samples_per_second", self.samples / train_seconds, epoch)
        losses = torch.stack(step_losses).float().cpu().tolist()  # the epoch's one read of its step losses
        first = (epoch - 1) * self.steps
        for end in range(SMOOTHING_STEPS, len(losses) + 1, SMOOTHING_STEPS):
            window = losses[end - SMOOTHING_STEPS:end]
            self.writer.add_scalar("train/loss_smoothed", sum(window) / len(window), first + end)
        self.writer.flush()  # a job killed later keeps what this epoch logged

    def tested(self, args: argparse.Namespace, seed: int, teacher: str, val: dict, test: dict) -> None:
        """The trial's hyperparameters with its best validation and its test accuracy (the HParams dashboard)."""
        if self.writer is None:
            return
        hparams: dict[str, Any] = {"lam": args.lam, "learning_rate": args.learning_rate, "batch_size": args.batch_size,
                                   "optim": args.optim, "epochs": args.epochs, "teacher": teacher,
                                   "random_seed": args.random_seed, "seed": seed}
        metrics = {"hparam/val_acc": val["acc"], "hparam/test_acc": test["acc"]}
        self.writer.add_hparams(hparams, metrics, run_name=".")  # ".": in the trial's own log, beside its curves
        self.writer.close()
