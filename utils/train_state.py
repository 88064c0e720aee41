"""What an interrupted trial needs to continue exactly where it stopped: saved after every epoch, read by --resume.

Besides the student, the optimizer, the schedule and the gradient scaler, the state holds every random
generator a trial draws from (torch on every device, NumPy's and Python's global ones, the batch order,
the partner draws) and the trial's progress: the best validation epoch so far and the metrics rows.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from utils.atomic import save_torch_atomically
from utils.distributed import gather_objects, rank, world_size
from utils.errors import InputError

if TYPE_CHECKING:  # utils.train imports this module
    from utils.train import TrialSetup

STATE_FILE = "train_state.pt"


@dataclass
class Progress:
    """A trial's progress after its last completed epoch."""

    epoch: int = 0
    best_acc: float = -math.inf  # epoch 1 is always better
    best_epoch: int = 0
    best_val: dict | None = None
    rows: list[list] = field(default_factory=list)  # metrics.csv rows so far


def save_training_state(path: Path, setup: TrialSetup, scaler: torch.amp.GradScaler | None,
                        progress: Progress) -> None:
    state = {
        "progress": vars(progress),
        "student": setup.student.state_dict(),
        "optimizer": setup.optimizer.state_dict(),
        "scheduler": setup.scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "random": gather_objects(_random_states(setup)),  # each process's, in process order
    }
    save_torch_atomically(state, path)


def load_training_state(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for a damaged file
        raise InputError(f"cannot read the training state {path} ({type(error).__name__}); expected the "
                         f"{STATE_FILE} that an interrupted run wrote") from None


def restore_training_state(state: dict, setup: TrialSetup, scaler: torch.amp.GradScaler | None) -> Progress:
    """Put a freshly built trial back where `state` was saved; return its progress."""
    setup.student.load_state_dict(state["student"])
    setup.optimizer.load_state_dict(state["optimizer"])
    setup.scheduler.load_state_dict(state["scheduler"])
    if scaler is not None:
        scaler.load_state_dict(state["scaler"])
    if len(state["random"]) != world_size():
        raise InputError(f"the run was interrupted with {len(state['random'])} process(es) and is resumed with "
                         f"{world_size()}; expected as many (torchrun --nproc_per_node)")
    _restore_random_states(state["random"][rank()], setup)
    return Progress(**state["progress"])


def _random_states(setup: TrialSetup) -> dict:
    numpy_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {**numpy_state, "state": {"key": numpy_state["state"]["key"].tolist(),
                                           "pos": numpy_state["state"]["pos"]}},
        "python": random.getstate(),
        "batch_order": setup.batch_order.get_state(),
        "partners": setup.partners.rng.bit_generator.state if setup.partners.rng is not None else None,
    }


def _restore_random_states(states: dict, setup: TrialSetup) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"]:
        torch.cuda.set_rng_state_all(states["cuda"])
    numpy_state = states["numpy"]
    np.random.set_state({**numpy_state, "state": {"key": np.array(numpy_state["state"]["key"], dtype=np.uint32),
                                                  "pos": numpy_state["state"]["pos"]}})
    random.setstate(states["python"])
    setup.batch_order.set_state(states["batch_order"])
    if setup.partners.rng is not None:
        setup.partners.rng.bit_generator.state = states["partners"]
