"""The one training loop: epochs of train and validate, the best checkpoint, then the test.

It knows nothing about images, audio or text: a batch is student inputs, labels and the samples'
positions in their split; teacher features come from a source that maps teacher-input keys to
features (a `TeacherFeatureCache` or an `InLoopTeacher`).
"""

from __future__ import annotations

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

from utils.atomic import save_torch_atomically, write_csv_atomically
from utils.data import Split
from utils.distributed import barrier, gather_rows, is_main, share, world_size
from utils.errors import NonFiniteLossError
from utils.loss import synergy_loss
from utils.metrics import MetricAccumulator
from utils.pairing import Partners
from utils.precise_bn import recompute_batchnorm_statistics
from utils.teacher_features import TeacherSource, autocast
from utils.train_state import (
    STATE_FILE,
    Progress,
    restore_training_state,
    save_training_state,
)

METRICS_COLUMNS = ("epoch", "lr", "train_cls", "train_latent", "train_acc", "val_cls", "val_latent", "val_acc",
                   "train_seconds", "epoch_seconds")


def run_epoch(student: nn.Module, loader: DataLoader, *, lam: float, device: torch.device,
              teacher_features: TeacherSource | None, partner_keys: Callable[[np.ndarray], np.ndarray],
              optimizer: torch.optim.Optimizer | None = None, scaler: torch.amp.GradScaler | None = None,
              amp_dtype: torch.dtype | None = None, progress: str | None = None) -> MetricAccumulator:
    """One pass over `loader`: a training epoch with `optimizer`, an evaluation without.

    With several processes a training batch is this process's share of a global batch: the partners are
    drawn for the whole global batch, as a single process draws them, and the loss is weighted by the
    share's size, so that the gradients the processes average are those of the global batch."""
    training = optimizer is not None
    student.train(training)
    metrics = MetricAccumulator()
    grad_mode = torch.enable_grad() if training else torch.inference_mode()
    with grad_mode:
        for batch in tqdm(loader, desc=progress, disable=progress is None, leave=False, file=sys.stderr):
            inputs = {name: value.to(device, non_blocking=True) for name, value in batch.inputs.items()}
            labels = batch.labels.to(device, non_blocking=True)
            positions, own = batch.positions, slice(None)
            if training and world_size() > 1:
                positions = gather_rows(positions.to(device)).cpu()
                own = share(len(positions))
            with autocast(device, amp_dtype):
                logits, feature = student(**inputs)
            target = None
            if teacher_features is not None:
                keys = partner_keys(positions.numpy())[own]
                target = teacher_features(torch.as_tensor(keys, dtype=torch.long))
            loss, cls, latent = synergy_loss(logits, labels, feature, target, lam)
            if training and world_size() > 1:
                loss = loss * (len(labels) * world_size() / len(positions))
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
    trained: nn.Module  # what the training steps call: the student, wrapped in DDP with several processes
    loaders: dict[str, DataLoader]  # train, val, test, and precise_bn for a student with BatchNorm
    splits: dict[str, Split]
    partners: Partners  # draws training partners' keys: `.draw(positions)`
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    batch_order: torch.Generator  # shuffles the training split each epoch
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


def train_trial(setup: TrialSetup, epochs: int, trial_dir: Path, log: Callable[[str], None],
                progress: bool, resume: dict | None = None) -> dict:
    """Train for `epochs` (or, with a saved training state `resume`, the epochs after its last one), keep the
    best validation epoch's weights, test them; return the trial's record. After each epoch the training
    state is saved in `trial_dir`, so an interrupted trial can continue exactly (`--resume`)."""
    scaler = torch.amp.GradScaler(setup.device.type) if setup.amp_dtype == torch.float16 else None
    done = restore_training_state(resume, setup, scaler) if resume else Progress()
    val_keys = setup.splits["val"].teacher_keys
    checkpoint = trial_dir / "best.pt"
    progress = progress and is_main()
    write_csv_atomically([METRICS_COLUMNS, *done.rows], trial_dir / "metrics.csv")
    for epoch in range(done.epoch + 1, epochs + 1):
        lr = setup.optimizer.param_groups[0]["lr"]
        start = time.perf_counter()
        train = _epoch(setup, "train", setup.partners.draw, f"epoch {epoch}", progress, scaler)
        train_seconds = time.perf_counter() - start
        if "precise_bn" in setup.loaders:  # saved with the weights in best.pt: the test uses them as they are
            recompute_batchnorm_statistics(setup.student, setup.loaders["precise_bn"], setup.device, setup.amp_dtype)
        val = _epoch(setup, "val", val_keys.__getitem__, f"epoch {epoch}", progress)
        epoch_seconds = time.perf_counter() - start
        log(f"{epoch}/{epochs} " + _format("Train", train))
        log(f"{epoch}/{epochs} " + _format("Val", val))
        done.rows.append([epoch, f"{lr:.6g}", train["cls_loss"], _blank(train["latent_loss"]), train["acc"],
                          val["cls_loss"], _blank(val["latent_loss"]), val["acc"], f"{train_seconds:.3f}",
                          f"{epoch_seconds:.3f}"])
        write_csv_atomically([METRICS_COLUMNS, *done.rows], trial_dir / "metrics.csv")
        if val["acc"] > done.best_acc:
            done.best_acc, done.best_epoch, done.best_val = val["acc"], epoch, val
            save_torch_atomically(setup.student.state_dict(), checkpoint)
        setup.scheduler.step()
        done.epoch = epoch
        save_training_state(trial_dir / STATE_FILE, setup, scaler, done)
    barrier()  # the first process wrote best.pt
    test = evaluate_checkpoint(setup, checkpoint, log, progress)
    return {"best_epoch": done.best_epoch, "val": done.best_val, "test": test, "checkpoint": str(checkpoint)}


def evaluate_checkpoint(setup: TrialSetup, checkpoint: Path, log: Callable[[str], None], progress: bool) -> dict:
    """Load the student's weights (and BatchNorm statistics) from `checkpoint`, test them, log the Test line."""
    setup.student.load_state_dict(torch.load(checkpoint, map_location=setup.device, weights_only=True))
    test = _epoch(setup, "test", setup.splits["test"].teacher_keys.__getitem__, "the test", progress and is_main())
    log(_format("Test", test))
    return test


_STAGES = {"train": "training", "val": "validation", "test": "test"}


def _epoch(setup: TrialSetup, split: str, partner_keys: Callable, when: str, progress: bool,
           scaler: torch.amp.GradScaler | None = None) -> dict:
    """One pass over a split; a non-finite loss or prediction ends the run (NonFiniteLossError, exit 1)."""
    model = setup.trained if split == "train" else setup.student
    metrics = run_epoch(model, setup.loaders[split], lam=setup.lam, device=setup.device,
                        teacher_features=setup.teacher_features, partner_keys=partner_keys,
                        optimizer=setup.optimizer if split == "train" else None, scaler=scaler,
                        amp_dtype=setup.amp_dtype, progress=f"{_STAGES[split]} ({when})" if progress else None)
    metrics = metrics.across_processes()
    if not metrics.finite():
        raise NonFiniteLossError(f"the {_STAGES[split]} loss or predictions became non-finite in {when} "
                                 f"(cls {float(metrics.cls_sum) / metrics.count:.4g}); expected finite values: "
                                 "try a lower --learning_rate or --amp none")
    return metrics.summary(setup.num_classes, setup.detailed_metrics)


def _blank(value: float | None) -> Any:
    return "" if value is None else value
