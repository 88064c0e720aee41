"""A run's folder and its files: a new folder for every run, its one writer (a lock), its log, the code's git
commit, files read back as a stranger's input, and files written so that a reader sees the old file or the
new one, never a half-written one.

A write goes to `<name>.tmp<pid>` and is renamed over the target. A writer killed in between leaves its
temporary file behind: it is never read, and `remove_stale_temporaries` deletes those of dead processes.
In a run of several processes (torchrun) only the first writes; the others' writes do nothing.
"""

from __future__ import annotations

import csv
import datetime
import fcntl
import json
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from utils.experiment import InputError
from utils.processes import is_main

TEMPORARY = ".tmp"


def make_run_dir(output_dir: str, script: str, label: str, name: str | None = None) -> Path:
    """A new folder `output_dir/<script>/<YYYYmmdd-HHMMSS>_<label>[_k]` (label e.g. seed42), never an existing one;
    with `name`, the run's own folder `output_dir/<script>/<name>` (a run of that name may have left it without
    its args.json: it is taken over)."""
    parent = Path(output_dir) / script
    parent.mkdir(parents=True, exist_ok=True)
    if name is not None:
        (parent / name).mkdir(exist_ok=True)
        return parent / name
    stem = f"{datetime.datetime.now():%Y%m%d-%H%M%S}_{label}"
    for suffix in ["", *(f"_{k}" for k in range(2, 10_000))]:
        try:
            (parent / (stem + suffix)).mkdir()
            return parent / (stem + suffix)
        except FileExistsError:
            continue
    raise InputError(f"could not create a new run folder under {parent}")


def git_commit() -> str | None:
    """The commit of this code, recorded in args.json; None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


class RunLog:
    """The stdout lines of a run, also appended to its log.txt (by the first process alone, in a run of several)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, line: str) -> None:
        if not is_main():
            return
        print(line, flush=True)
        with open(self.path, "a") as handle:
            handle.write(line + "\n")


@contextmanager
def locked_run_folder(run_dir: Path) -> Iterator[None]:
    """`with locked_run_folder(run_dir):` this process is the one writer of `run_dir`: an exclusive lock on the
    folder itself, which the system also releases when the process ends, however it ends, so a lock left by
    a killed run never blocks a resume; taking it writes nothing. A second command on a locked folder is
    refused at once, naming the holder. Only the first of several processes writes, so only it locks."""
    if not is_main():
        yield
        return
    descriptor = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"{run_dir} is in use by process {_lock_holder(run_dir)}, which runs or resumes it; "
                             "expected one command at a time on a run folder (wait for it to end, or stop "
                             "it)") from None
        yield
    finally:
        os.close(descriptor)


def _lock_holder(folder: Path) -> str:
    """The process id that holds the lock on `folder`, as Linux lists it in /proc/locks; "unknown" elsewhere."""
    inode = folder.stat().st_ino
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return "unknown"
    for line in lines:  # e.g. "1: FLOCK  ADVISORY  WRITE 14349 fe:00:2146373 0 EOF"
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
            return fields[4]
    return "unknown"


def read_json(path: Path, expected: str) -> Any:
    """The parsed JSON file; InputError naming it and `expected` if it is missing, not UTF-8, not JSON, or
    nested deeper than the parser recurses."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:  # ValueError: not UTF-8, or not JSON
        raise InputError(f"cannot read {path} ({type(error).__name__}); expected {expected}") from None


def temporary_path(path: Path) -> Path:
    """Where a write of `path` goes before it is renamed over it."""
    return path.with_name(f"{path.name}{TEMPORARY}{os.getpid()}")


def write_json_atomically(data: Any, path: Path, indent: int | None = 2) -> None:
    """Strict JSON (NaN and infinities are refused, never written), atomically."""
    _write_atomically(path, _write_json, data, indent)


def write_csv_atomically(rows: Sequence[Sequence[Any]], path: Path) -> None:
    _write_atomically(path, _write_csv, rows)


def save_torch_atomically(state: Any, path: Path) -> None:
    _write_atomically(path, _save_torch, state)


def _write_atomically(path: Path, write: Callable[..., None], *content: Any) -> None:
    """`write(tmp, *content)`, then the rename; a write that fails leaves no temporary file behind."""
    if not is_main():
        return
    tmp = temporary_path(path)
    try:
        write(tmp, *content)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_json(tmp: Path, data: Any, indent: int | None) -> None:
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=indent, allow_nan=False)
        handle.write("\n")


def _write_csv(tmp: Path, rows: Sequence[Sequence[Any]]) -> None:
    with open(tmp, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def _save_torch(tmp: Path, state: Any) -> None:
    torch.save(state, tmp)


def process_alive(pid: str) -> bool:
    """Whether process `pid` (a string of digits; anything else counts as alive) still runs."""
    if not pid.isdigit():
        return True  # not one of ours: leave it alone
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files of killed writers in `folder` (not of writers still running); return them."""
    removed = []
    for path in folder.glob(f"*{TEMPORARY}*"):
        pid = path.name.rsplit(TEMPORARY, 1)[1]
        if path.is_file() and pid.isdigit() and not process_alive(pid):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
