"""Several script commands in the same torchrun processes, one after the other, so that a test pays for torchrun's
start once: `torchrun --nproc_per_node N tests/torchrun_commands.py PLAN.json`.

PLAN.json is a list of commands, each {"script", "argv", "out"} and optionally
    "copy_after_epoch": [E, FOLDER]  the first process copies the run folder to FOLDER right after epoch E saved its
                                     checkpoints: what a kill during epoch E + 1 leaves on disk
    "kill_at_step": N                the first process kills itself (SIGKILL) at its N-th optimizer step; torchrun
                                     then stops the others, and no later command runs
    "fail_at_step": N                the last process raises a RuntimeError (as if from inside torch) in its N-th
                                     training step
Each process writes a command's stdout, stderr and exit code to `<out>.rank<R>.{stdout,stderr,code}`.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repository is not on the path

import torch  # noqa: E402
from torch.distributed import distributed_c10d  # noqa: E402

import utils.loop  # noqa: E402

RANK, WORLD_SIZE = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])


def at_optimizer_step(n: int, action: Callable[[], None]) -> contextlib.AbstractContextManager:
    """`action()` in place of the n-th optimizer step of this process (the scripts' default optimizer, Adam)."""
    original, calls = torch.optim.Adam.step, []

    def step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            action()
        return original(self, *args, **kwargs)

    return _patched(torch.optim.Adam, "step", step)


def copied_after_epoch(epoch: int, folder: Path) -> contextlib.AbstractContextManager:
    """The run folder copied to `folder` by the first process right after epoch `epoch` saved its training state."""
    original = utils.loop.save_epoch

    def save(trial_dir, trial, progress, improved):
        original(trial_dir, trial, progress, improved)
        if RANK == 0 and progress.epoch == epoch:
            shutil.copytree(trial_dir.parent, folder)

    return _patched(utils.loop, "save_epoch", save)


@contextlib.contextmanager
def _patched(owner: object, name: str, value: object) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


def fail() -> None:
    raise RuntimeError("a failure inside torch, on purpose\n(its second line)")


def run(index: int, command: dict) -> None:
    out = command["out"]
    # torch names a new default process group by a counter that it resets when one is destroyed, and the store's keys
    # by that name: a new name per command, so that a command never reads the keys of the one before.
    distributed_c10d._world.group_count = 1000 * (index + 1)
    with contextlib.ExitStack() as stack:
        if "copy_after_epoch" in command:
            stack.enter_context(copied_after_epoch(command["copy_after_epoch"][0],
                                                   Path(command["copy_after_epoch"][1])))
        if "kill_at_step" in command and RANK == 0:
            stack.enter_context(at_optimizer_step(command["kill_at_step"],
                                                  lambda: os.kill(os.getpid(), signal.SIGKILL)))
        if "fail_at_step" in command and RANK == WORLD_SIZE - 1:
            stack.enter_context(at_optimizer_step(command["fail_at_step"], fail))
        stdout = stack.enter_context(open(f"{out}.rank{RANK}.stdout", "w", buffering=1))
        stderr = stack.enter_context(open(f"{out}.rank{RANK}.stderr", "w", buffering=1))
        stack.enter_context(contextlib.redirect_stdout(stdout))
        stack.enter_context(contextlib.redirect_stderr(stderr))
        script = importlib.import_module(command["script"].removesuffix(".py"))
        code = script.main([*command["argv"], "--no_progress"])
    Path(f"{out}.rank{RANK}.code").write_text(str(code))


def main() -> None:
    for index, command in enumerate(json.loads(Path(sys.argv[1]).read_text())):
        run(index, command)


if __name__ == "__main__":
    main()
