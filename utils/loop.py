"""The one training loop: epochs of train and validate, the best checkpoint, then the test; and the training
state saved after every epoch, from which an interrupted trial continues exactly (`--resume`).

It knows nothing about images, audio or text: a batch is student inputs, labels and the samples'
positions in their split; teacher features come from a source that maps teacher-input keys to
features (a `TeacherFeatureCache` or an `InLoopTeacher`).
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from utils.experiment import Batch, InputError, NonFiniteLossError
from utils.metrics import MetricAccumulator
from utils.precise_bn import recompute_batchnorm_statistics
from utils.processes import (
    autocast,
    barrier,
    compile_seconds,
    gather_objects,
    is_main,
    on_device,
    rank,
    share,
    world_size,
)
from utils.run_folder import save_torch_atomically, write_csv_atomically
from utils.tensorboard_log import TensorBoardLog
from utils.trial import Trial

METRICS_COLUMNS = ("epoch", "lr", "train_cls", "train_latent", "train_acc", "val_cls", "val_latent", "val_acc",
                   "train_seconds", "epoch_seconds")
STATE_FILE = "train_state.pt"
_STAGES = {"train": "training", "val": "validation", "test": "test"}


class StageError(Exception):
    """An error raised inside torch, transformers or a collective (or a bug) during `stage` of a run, e.g. "training
    step 3 of epoch 1": the run ends with exit code 1 and one line (utils/run.py). `folder` is where the process
    that failed keeps its traceback (its trial's folder), once the run knows it."""

    def __init__(self, stage: str, error: Exception) -> None:
        super().__init__(stage)
        self.stage, self.error, self.folder = stage, error, None


def run_epoch(trial: Trial, split: str, when: str, progress: bool = False,
              step_losses: list[torch.Tensor] | None = None) -> dict:
    """One pass over a split of the trial: a training epoch ("train") or an evaluation ("val", "test"), `when`
    naming it in messages. Returns the split's metrics; a non-finite loss or prediction ends the run
    (NonFiniteLossError, exit 1). A training epoch appends each step's loss to `step_losses` (on the device).

    With several processes each reads the whole global batch and computes its share: the partners are drawn
    for the whole global batch, as a single process draws them, and the loss is weighted by the share's
    size, so that the gradients the processes average are those of the global batch."""
    training = split == "train"
    (trial.trained if training else trial.student).train(training)
    metrics = MetricAccumulator()
    bar = f"{_STAGES[split]} ({when})" if progress else None
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
    model = trial.trained if training else trial.student
    own = share(len(batch.labels))  # this process's part of the global batch: all of it in one process
    if own.start == own.stop:
        return
    inputs = {name: on_device(value[own], trial.device) for name, value in batch.inputs.items()}
    labels = batch.labels[own].to(trial.device, non_blocking=True)
    with autocast(trial.device, trial.amp_dtype):
        logits, feature = model(**inputs)
    target = None
    if trial.teacher_features is not None:
        # Training: the drawn partners' inputs; evaluation: the sample's own (a diagnostic).
        keys = (trial.partners.draw(batch.positions) if training
                else trial.splits[split].teacher_keys[batch.positions])
        target = trial.teacher_features(keys[own])
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


@dataclass
class Progress:
    """A trial's progress after its last completed epoch."""

    epoch: int = 0
    best_acc: float = -math.inf  # epoch 1 is always better
    best_epoch: int = 0
    best_val: dict | None = None
    rows: list[list] = field(default_factory=list)  # metrics.csv rows so far


def train_trial(trial: Trial, epochs: int, trial_dir: Path, log: Callable[[str], None], progress: bool,
                done: Progress, board: TensorBoardLog | None = None) -> dict:
    """Train the epochs after `done.epoch` up to `epochs`, keep the best validation epoch's weights, test them;
    return the trial's record. After each epoch the training state is saved in `trial_dir`, so an interrupted
    trial can continue exactly (`--resume`), then a better epoch's best.pt, then the epoch goes to `board`
    (--tensorboard)."""
    checkpoint = trial_dir / "best.pt"
    progress = progress and is_main()
    write_csv_atomically([METRICS_COLUMNS, *done.rows], trial_dir / "metrics.csv")
    if done.epoch and done.best_epoch == done.epoch:  # a kill may have come between the state and best.pt
        save_torch_atomically(trial.student.state_dict(), checkpoint)  # the restored student is that epoch's
    compiling = compile_seconds()
    for epoch in range(done.epoch + 1, epochs + 1):
        lr = trial.optimizer.param_groups[0]["lr"]
        start = time.perf_counter()
        step_losses = [] if board is not None else None
        train = run_epoch(trial, "train", f"epoch {epoch}", progress, step_losses)
        train_seconds = time.perf_counter() - start
        if compile_seconds() > compiling and is_main():  # --compile: its first steps compiled the step
            print(f"compile: torch.compile compiled the training step of {type(trial.student).__name__} in "
                  f"{compile_seconds() - compiling:.1f} s (graph capture, forward and backward code)", file=sys.stderr)
            compiling = compile_seconds()
        if "precise_bn" in trial.loaders:  # saved with the weights in best.pt: the test uses them as they are
            recompute_batchnorm_statistics(trial.student, trial.loaders["precise_bn"], trial.device, trial.amp_dtype)
        val = run_epoch(trial, "val", f"epoch {epoch}", progress)
        epoch_seconds = time.perf_counter() - start
        log(f"{epoch}/{epochs} " + _format("Train", train))
        log(f"{epoch}/{epochs} " + _format("Val", val))
        done.rows.append([epoch, f"{lr:.6g}", train["cls_loss"], _blank(train["latent_loss"]), train["acc"],
                          val["cls_loss"], _blank(val["latent_loss"]), val["acc"], f"{train_seconds:.3f}",
                          f"{epoch_seconds:.3f}"])
        write_csv_atomically([METRICS_COLUMNS, *done.rows], trial_dir / "metrics.csv")
        better = val["acc"] > done.best_acc
        if better:
            done.best_acc, done.best_epoch, done.best_val = val["acc"], epoch, val
        trial.scheduler.step()
        done.epoch = epoch
        # The state first: it holds this epoch's student too, so a kill before best.pt is written loses nothing.
        save_training_state(trial_dir / STATE_FILE, trial, done)
        if better:
            save_torch_atomically(trial.student.state_dict(), checkpoint)
        if board is not None:
            board.epoch(epoch, lr, train, val, train_seconds, step_losses)
    barrier()  # the first process wrote best.pt
    test = evaluate_checkpoint(trial, checkpoint, log, progress)
    return {"best_epoch": done.best_epoch, "val": done.best_val, "test": test, "checkpoint": str(checkpoint)}


def evaluate_checkpoint(trial: Trial, checkpoint: Path, log: Callable[[str], None], progress: bool) -> dict:
    """Load the student's weights (and BatchNorm statistics) from `checkpoint`, test them, log the Test line."""
    trial.student.load_state_dict(load_checkpoint(checkpoint, trial.student))
    test = run_epoch(trial, "test", "the test", progress and is_main())
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


def save_training_state(path: Path, trial: Trial, progress: Progress) -> None:
    """The student, optimizer, schedule, gradient scaler, every random generator a trial draws from (torch on
    every device, NumPy's and Python's global ones, the batch order, the partner draws) and the progress."""
    state = {
        "progress": vars(progress),
        "student": trial.student.state_dict(),
        "optimizer": trial.optimizer.state_dict(),
        "scheduler": trial.scheduler.state_dict(),
        "scaler": trial.scaler.state_dict() if trial.scaler is not None else None,
        "random": gather_objects(_random_states(trial)),  # each process's, in process order
    }
    save_torch_atomically(state, path)


def load_checkpoint(path: Path, student: nn.Module) -> dict[str, torch.Tensor]:
    """The student's state_dict saved in `path` (best.pt), checked to fit `student` (its keys and shapes)."""
    state = _load_torch(path, "the student's state_dict (best.pt) that its trial saved")
    expected = student.state_dict()
    fits = isinstance(state, dict) and state.keys() == expected.keys() and all(
        isinstance(state[name], torch.Tensor) and state[name].shape == value.shape for name, value in expected.items())
    if not fits:
        raise InputError(f"{path} does not fit the student (its keys or shapes differ); expected the state_dict that "
                         "a trial of this run saved")
    return state


def load_training_state(path: Path, epochs: int) -> dict:
    """The training state an interrupted trial saved, checked for every part `restore_training_state` reads."""
    expected = f"the {STATE_FILE} that an interrupted run wrote"
    state = _load_torch(path, expected)
    parts = {"progress": dict, "student": dict, "optimizer": dict, "scheduler": dict, "random": list}
    missing = [name for name, kind in parts.items()
               if not isinstance(state, dict) or not isinstance(state.get(name), kind)]
    if missing:
        raise InputError(f"{path} lacks {', '.join(missing)}; expected {expected}")
    progress = state["progress"]
    epoch = progress.get("epoch")
    if type(epoch) is not int or not 1 <= epoch <= epochs or set(progress) != set(vars(Progress())) or \
            not isinstance(progress["rows"], list) or len(progress["rows"]) != epoch or \
            type(progress["best_epoch"]) is not int or not 1 <= progress["best_epoch"] <= epoch:
        raise InputError(f"{path} holds no valid progress (epoch {epoch!r} of {epochs}); expected {expected}")
    if len(state["random"]) != world_size() or not all(isinstance(s, dict) for s in state["random"]):
        raise InputError(f"{path} holds the random states of {len(state['random'])} process(es), not of "
                         f"{world_size()}; expected {expected} with as many processes")
    return state


def restore_training_state(state: dict, trial: Trial, path: Path) -> Progress:
    """Put a freshly built trial back where `state` (from `path`) was saved; return its progress."""
    try:
        trial.student.load_state_dict(state["student"])
        trial.optimizer.load_state_dict(state["optimizer"])
        trial.scheduler.load_state_dict(state["scheduler"])
        if trial.scaler is not None:
            trial.scaler.load_state_dict(state["scaler"])
        _restore_random_states(state["random"][rank()], trial)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as error:
        raise InputError(f"{path} does not fit this trial ({type(error).__name__}: {str(error).splitlines()[0]}); "
                         f"expected the {STATE_FILE} of this run") from None
    return Progress(**state["progress"])


def _load_torch(path: Path, expected: str) -> Any:
    if not path.is_file():
        raise InputError(f"{path} is missing; expected {expected}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for a damaged file
        raise InputError(f"cannot read {path} ({type(error).__name__}); expected {expected}") from None


def _random_states(trial: Trial) -> dict:
    numpy_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {**numpy_state, "state": {"key": numpy_state["state"]["key"].tolist(),
                                           "pos": numpy_state["state"]["pos"]}},
        "python": random.getstate(),
        "batch_order": trial.batch_order.get_state(),
        "partners": trial.partners.rng.bit_generator.state if trial.partners.rng is not None else None,
    }


def _restore_random_states(states: dict, trial: Trial) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"]:
        torch.cuda.set_rng_state_all(states["cuda"])
    numpy_state = states["numpy"]
    np.random.set_state({**numpy_state, "state": {"key": np.array(numpy_state["state"]["key"], dtype=np.uint32),
                                                  "pos": numpy_state["state"]["pos"]}})
    random.setstate(states["python"])
    trial.batch_order.set_state(states["batch_order"])
    if trial.partners.rng is not None:
        trial.partners.rng.bit_generator.state = states["partners"]
