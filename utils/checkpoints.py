"""A trial's checkpoints: its best weights (`best.pt`, the student's state_dict at its best validation epoch) and
its training state (`train_state.pt`, saved after every epoch), from which an interrupted trial continues exactly
(`--resume`), and both read back as a stranger's input.

After an epoch the state is saved first and `best.pt` after it, both atomically: the state holds that epoch's
student too, so a kill between the two loses nothing (`restore_best`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from utils.distributed import gather_objects, rank, world_size
from utils.experiment import InputError
from utils.run_files import BEST_FILE, STATE_FILE
from utils.run_folder import save_torch_atomically
from utils.trial import Trial


@dataclass
class TrialProgress:
    """A trial's progress after its last completed epoch, saved with its training state."""

    epoch: int = 0
    best_acc: float = -math.inf  # epoch 1 is always better
    best_epoch: int = 0
    best_val: dict | None = None
    rows: list[list] = field(default_factory=list)  # metrics.csv rows so far


def save_epoch(trial_dir: Path, trial: Trial, progress: TrialProgress, improved: bool) -> None:
    """After an epoch: the training state, then, if the epoch improved on the best, `best.pt`."""
    save_training_state(trial_dir / STATE_FILE, trial, progress)
    if improved:
        save_torch_atomically(trial.student.state_dict(), trial_dir / BEST_FILE)


def restore_best(trial_dir: Path, trial: Trial, progress: TrialProgress) -> None:
    """On resume, when the last saved epoch was the best: `best.pt` written again from the restored student, which
    is that epoch's (a kill may have come between the state and best.pt). An earlier best epoch's `best.pt` is
    checked when the state is read (`utils.run`), before anything is written."""
    if progress.epoch and progress.best_epoch == progress.epoch:
        save_torch_atomically(trial.student.state_dict(), trial_dir / BEST_FILE)


def save_training_state(path: Path, trial: Trial, progress: TrialProgress) -> None:
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
    if type(epoch) is not int or not 1 <= epoch <= epochs or set(progress) != set(vars(TrialProgress())) or \
            not isinstance(progress["rows"], list) or len(progress["rows"]) != epoch or \
            type(progress["best_epoch"]) is not int or not 1 <= progress["best_epoch"] <= epoch:
        raise InputError(f"{path} holds no valid progress (epoch {epoch!r} of {epochs}); expected {expected}")
    if len(state["random"]) != world_size() or not all(isinstance(s, dict) for s in state["random"]):
        raise InputError(f"{path} holds the random states of {len(state['random'])} process(es), not of "
                         f"{world_size()}; expected {expected} with as many processes")
    return state


def restore_training_state(state: dict, trial: Trial, path: Path) -> TrialProgress:
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
    return TrialProgress(**state["progress"])


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
