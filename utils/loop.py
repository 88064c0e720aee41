"""The one training loop: epochs of train and validate, the best checkpoint, then the test; the checkpoints after
every epoch (utils/checkpoints.py), from which an interrupted trial continues exactly (`--resume`).

It knows nothing about images, audio or text: a batch is student inputs, labels and the samples'
positions in their split; teacher features come from a source that maps teacher-input keys to
features (a `TeacherFeatureCache` or an `InLoopTeacher`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from utils.checkpoints import TrialProgress, load_checkpoint, restore_best, save_epoch
from utils.device import autocast, on_device
from utils.distributed import barrier, is_main, share, world_size
from utils.experiment import Batch, InputError, NonFiniteLossError
from utils.metrics import MetricAccumulator
from utils.precise_bn import recompute_batchnorm_statistics
from utils.run_files import BEST_FILE, METRICS_COLUMNS
from utils.run_folder import write_csv_atomically
from utils.synergy import teacher_targets
from utils.tensorboard_log import TensorBoardLog
from utils.trial import Trial

_STAGES = {"train": "training", "val": "validation", "test": "test"}


class StageError(Exception):
    """An error raised inside torch, transformers or a collective (or a bug) during `stage` of a run, e.g. "training
    step 3 of epoch 1": the run ends with exit code 1 and one line (utils/run.py). `folder` is where the process
    that failed keeps its traceback (its trial's folder), once the run knows it."""

    def __init__(self, stage: str, error: Exception) -> None:
        super().__init__(stage)
        self.stage, self.error, self.folder = stage, error, None


def run_epoch(trial: Trial, split: str, when: str, bars: bool = False,
              step_losses: list[torch.Tensor] | None = None) -> dict:
    """One pass over a split of the trial: a training epoch ("train") or an evaluation ("val", "test"), `when`
    naming it in messages. Returns the split's metrics; a non-finite loss or prediction ends the run
    (NonFiniteLossError, exit 1). A training epoch appends each step's loss to `step_losses` (on the device).

    With several processes each reads the whole global batch and computes its share: the partners are drawn
    for the whole global batch, as a single process draws them, and the loss is weighted by the share's
    size, so that the gradients the processes average are those of the global batch."""
    training = split == "train"
    (trial.step_model if training else trial.student).train(training)
    metrics = MetricAccumulator()
    bar = f"{_STAGES[split]} ({when})" if bars else None
    with torch.enable_grad() if training else torch.inference_mode():
        batches = tqdm(trial.loaders[split], desc=bar, disable=bar is None, leave=False, file=sys.stderr)
        for step, batch in enumerate(batches, start=1):
            try:
                run_step(trial, split, batch, metrics, step_losses)
            except (InputError, NonFiniteLossError):
                raise
            except Exception as error:  # raised inside torch, transformers or a collective (or a bug)
                stage = f"{_STAGES[split]} step {step}" + ("" if split == "test" else f" of {when}")
                raise StageError(stage, error) from error
    metrics = metrics.across_processes()
    if not metrics.finite():
        raise NonFiniteLossError(f"the {_STAGES[split]} loss or predictions became non-finite in {when} "
                                 f"(cls {float(metrics.cls_sum) / metrics.count:.4g}); expected finite values: "
                                 "try a lower --learning_rate or --amp none")
    return metrics.summary(trial.experiment.num_classes, trial.experiment.detailed_metrics)


def run_step(trial: Trial, split: str, batch: Batch, metrics: MetricAccumulator,
             step_losses: list[torch.Tensor] | None) -> None:
    """One step of `run_epoch` on this process's share of `batch`: its loss terms added to `metrics` and, in training,
    the optimizer's step."""
    training = split == "train"
    model = trial.step_model if training else trial.student
    own = share(len(batch.labels))  # this process's part of the global batch: all of it in one process
    if own.start == own.stop:
        return
    inputs = {name: on_device(value[own], trial.device) for name, value in batch.inputs.items()}
    labels = batch.labels[own].to(trial.device, non_blocking=True)
    with autocast(trial.device, trial.amp_dtype):
        logits, feature = model(**inputs)
    target = teacher_targets(trial.teacher_features, trial.partners, trial.splits[split], batch.positions, training,
                             own)
    terms = trial.objective(logits, labels, feature, target)
    if training:
        loss = terms.loss
        if world_size() > 1:
            loss = loss * (len(labels) * world_size() / len(batch.labels))
        optimizer_step(trial, loss)
        if step_losses is not None:
            step_losses.append(terms.loss.detach())
    metrics.add(terms.cls, terms.latent, logits, labels)


def optimizer_step(trial: Trial, loss: torch.Tensor) -> None:
    """The backward pass and the optimizer's step (through the gradient scaler with --amp fp16)."""
    trial.optimizer.zero_grad(set_to_none=True)
    if trial.scaler is not None:
        trial.scaler.scale(loss).backward()
        trial.scaler.step(trial.optimizer)
        trial.scaler.update()
    else:
        loss.backward()
        trial.optimizer.step()


def train_trial(trial: Trial, epochs: int, trial_dir: Path, log: Callable[[str], None], bars: bool,
                progress: TrialProgress, board: TensorBoardLog | None = None) -> dict:
    """Train the epochs after `progress.epoch` up to `epochs`, keep the best validation epoch's weights, test them;
    return the trial's record. After each epoch its checkpoints are saved in `trial_dir`, so an interrupted trial
    can continue exactly (`--resume`), and then the epoch goes to `board` (--tensorboard). `bars`: progress bars."""
    bars = bars and is_main()
    write_csv_atomically([METRICS_COLUMNS, *progress.rows], trial_dir / "metrics.csv")
    restore_best(trial_dir, trial, progress)
    for epoch in range(progress.epoch + 1, epochs + 1):
        lr = trial.optimizer.param_groups[0]["lr"]
        start = time.perf_counter()
        step_losses = [] if board is not None else None
        train = run_epoch(trial, "train", f"epoch {epoch}", bars, step_losses)
        train_seconds = time.perf_counter() - start
        if "precise_bn" in trial.loaders:  # saved with the weights in best.pt: the test uses them as they are
            recompute_batchnorm_statistics(trial.student, trial.loaders["precise_bn"], trial.device, trial.amp_dtype)
        val = run_epoch(trial, "val", f"epoch {epoch}", bars)
        epoch_seconds = time.perf_counter() - start
        log(f"{epoch}/{epochs} " + _format("Train", train))
        log(f"{epoch}/{epochs} " + _format("Val", val))
        progress.rows.append([epoch, f"{lr:.6g}", train["cls_loss"], _blank(train["latent_loss"]), train["acc"],
                              val["cls_loss"], _blank(val["latent_loss"]), val["acc"], f"{train_seconds:.3f}",
                              f"{epoch_seconds:.3f}"])
        write_csv_atomically([METRICS_COLUMNS, *progress.rows], trial_dir / "metrics.csv")
        improved = val["acc"] > progress.best_acc
        if improved:
            progress.best_acc, progress.best_epoch, progress.best_val = val["acc"], epoch, val
        trial.scheduler.step()
        progress.epoch = epoch
        save_epoch(trial_dir, trial, progress, improved)
        if board is not None:
            board.epoch(epoch, lr, train, val, train_seconds, step_losses)
    barrier()  # the first process wrote best.pt
    checkpoint = trial_dir / BEST_FILE
    test = evaluate_checkpoint(trial, checkpoint, log, bars)
    return {"best_epoch": progress.best_epoch, "val": progress.best_val, "test": test, "checkpoint": str(checkpoint)}


def evaluate_checkpoint(trial: Trial, checkpoint: Path, log: Callable[[str], None], bars: bool) -> dict:
    """Load the student's weights (and BatchNorm statistics) from `checkpoint`, test them, log the Test line."""
    trial.student.load_state_dict(load_checkpoint(checkpoint, trial.student))
    test = run_epoch(trial, "test", "the test", bars and is_main())
    log(_format("Test", test))
    return test


def _format(stage: str, result: dict) -> str:
    latent = "-" if result["latent_loss"] is None else f"{result['latent_loss']:.4f}"
    line = f"{stage} - cls: {result['cls_loss']:.4f}, latent: {latent}, acc: {100 * result['acc']:.2f}"
    if "uar" in result:
        line += f", uar: {100 * result['uar']:.2f}, macro_f1: {100 * result['macro_f1']:.2f}"
    return line


def _blank(value: float | None) -> Any:
    return "" if value is None else value
