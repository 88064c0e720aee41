"""The one training loop: epochs of train and validate, the best checkpoint, then the test.

It knows nothing about images, audio or text: a batch is student inputs, labels and the samples'
positions in their split; teacher features come from a source that maps teacher-input keys to
features (a `TeacherFeatureCache` or an `InLoopTeacher`).
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from utils.data import Split
from utils.errors import NonFiniteLossError
from utils.loss import synergy_loss
from utils.metrics import MetricAccumulator
from utils.pairing import Partners
from utils.precise_bn import recompute_batchnorm_statistics
from utils.teacher_features import autocast

METRICS_COLUMNS = ("epoch", "lr", "train_cls", "train_latent", "train_acc", "val_cls", "val_latent", "val_acc",
                   "train_seconds", "epoch_seconds")


TeacherSource = Callable[[torch.Tensor], torch.Tensor]


def run_epoch(student: nn.Module, loader: DataLoader, *, lam: float, device: torch.device,
              teacher_features: TeacherSource | None, partner_keys: Callable[[np.ndarray], np.ndarray],
              optimizer: torch.optim.Optimizer | None = None, scaler: torch.amp.GradScaler | None = None,
              amp_dtype: torch.dtype | None = None, progress: str | None = None) -> MetricAccumulator:
    """One pass over `loader`: a training epoch with `optimizer`, an evaluation without."""
    training = optimizer is not None
    student.train(training)
    metrics = MetricAccumulator()
    grad_mode = torch.enable_grad() if training else torch.inference_mode()
    with grad_mode:
        for batch in tqdm(loader, desc=progress, disable=progress is None, leave=False, file=sys.stderr):
            inputs = {name: value.to(device, non_blocking=True) for name, value in batch.inputs.items()}
            labels = batch.labels.to(device, non_blocking=True)
            with autocast(device, amp_dtype):
                logits, feature = student(**inputs)
            target = None
            if teacher_features is not None:
                keys = partner_keys(batch.positions.numpy())
                target = teacher_features(torch.as_tensor(keys, dtype=torch.long))
            loss, cls, latent = synergy_loss(logits, labels, feature, target, lam)
            if training:
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
            metrics.add(cls, latent, logits, labels)
    return metrics


@dataclass
class TrialSetup:
    """Everything one trial trains with; built by `utils.trial.Trials.build`."""

    student: nn.Module
    loaders: dict[str, DataLoader]  # train, val, test, and precise_bn for a student with BatchNorm
    splits: dict[str, Split]
    partners: Partners  # draws training partners' keys: `.draw(positions)`
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    teacher_features: TeacherSource | None
    lam: float
    device: torch.device
    amp_dtype: torch.dtype | None
    num_classes: int
    detailed_metrics: bool


def _format(stage: str, result: dict) -> str:
    latent = "-" if result["latent_loss"] is None else f"{result['latent_loss']:.4f}"
    line = f"{stage} - cls: {result['cls_loss']:.4f}, latent: {latent}, acc: {100 * result['acc']:.2f}"
    if "uar" in result:
        line += f", uar: {100 * result['uar']:.2f}, macro_f1: {100 * result['macro_f1']:.2f}"
    return line


def _save_atomically(state: dict, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train_trial(setup: TrialSetup, epochs: int, trial_dir: Path, log: Callable[[str], None],
                progress: bool) -> dict:
    """Train for `epochs`, keep the best validation epoch's weights, test them; return the trial's record."""
    scaler = torch.amp.GradScaler(setup.device.type) if setup.amp_dtype == torch.float16 else None
    val_keys = setup.splits["val"].teacher_keys
    best_acc, best_epoch, best_val = -math.inf, 0, None
    checkpoint = trial_dir / "best.pt"
    with open(trial_dir / "metrics.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(METRICS_COLUMNS)
        for epoch in range(1, epochs + 1):
            lr = setup.optimizer.param_groups[0]["lr"]
            start = time.perf_counter()
            train = _epoch(setup, "train", setup.partners.draw, progress and f"epoch {epoch}/{epochs}", scaler)
            train_seconds = time.perf_counter() - start
            if "precise_bn" in setup.loaders:  # saved with the weights in best.pt: the test uses them as they are
                recompute_batchnorm_statistics(setup.student, setup.loaders["precise_bn"], setup.device,
                                               setup.amp_dtype)
            val = _epoch(setup, "val", val_keys.__getitem__, progress and "validate")
            epoch_seconds = time.perf_counter() - start
            _check_finite(train, epoch)
            log(f"{epoch}/{epochs} " + _format("Train", train))
            log(f"{epoch}/{epochs} " + _format("Val", val))
            writer.writerow([epoch, f"{lr:.6g}", train["cls_loss"], _blank(train["latent_loss"]), train["acc"],
                             val["cls_loss"], _blank(val["latent_loss"]), val["acc"],
                             f"{train_seconds:.3f}", f"{epoch_seconds:.3f}"])
            handle.flush()
            if val["acc"] > best_acc:
                best_acc, best_epoch, best_val = val["acc"], epoch, val
                _save_atomically(setup.student.state_dict(), checkpoint)
            setup.scheduler.step()
    setup.student.load_state_dict(torch.load(checkpoint, map_location=setup.device, weights_only=True))
    test = _epoch(setup, "test", setup.splits["test"].teacher_keys.__getitem__, progress and "test")
    log(_format("Test", test))
    return {"best_epoch": best_epoch, "val": best_val, "test": test, "checkpoint": str(checkpoint)}


def _epoch(setup: TrialSetup, split: str, partner_keys: Callable, progress: str | bool,
           scaler: torch.amp.GradScaler | None = None) -> dict:
    metrics = run_epoch(setup.student, setup.loaders[split], lam=setup.lam, device=setup.device,
                        teacher_features=setup.teacher_features, partner_keys=partner_keys,
                        optimizer=setup.optimizer if split == "train" else None, scaler=scaler,
                        amp_dtype=setup.amp_dtype, progress=progress or None)
    return metrics.summary(setup.num_classes, setup.detailed_metrics)


def _check_finite(result: dict, epoch: int) -> None:
    losses = [result["cls_loss"]] + ([] if result["latent_loss"] is None else [result["latent_loss"]])
    if not all(math.isfinite(x) for x in losses):
        raise NonFiniteLossError(f"the training loss became non-finite in epoch {epoch} "
                                 f"(cls {result['cls_loss']}, latent {result['latent_loss']}); "
                                 "expected finite losses: try a lower --learning_rate or --amp none")


def _blank(value: float | None) -> Any:
    return "" if value is None else value
