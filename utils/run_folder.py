"""A run's folder and its files: a new folder for every run, its log, the code's git commit, and files
written so that a reader sees the old file or the new one, never a half-written one.

A write goes to `<name>.tmp<pid>` and is renamed over the target. A writer killed in between leaves its
temporary file behind: it is never read, and `remove_stale_temporaries` deletes those of dead processes.
In a run of several processes (torchrun) only the first writes; the others' writes do nothing.
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Sequence

import torch

from utils.experiment import InputError
from utils.processes import is_main

TEMPORARY = ".tmp"


def make_run_dir(output_dir: str, script: str, label: str) -> Path:
    """A new folder `output_dir/<script>/<YYYYmmdd-HHMMSS>_<label>[_k]` (label e.g. seed42), never an existing one."""
    parent = Path(output_dir) / script
    parent.mkdir(parents=True, exist_ok=True)
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


def temporary_path(path: Path) -> Path:
    """Where a write of `path` goes before it is renamed over it."""
    return path.with_name(f"{path.name}{TEMPORARY}{os.getpid()}")


def write_json_atomically(data: Any, path: Path, indent: int | None = 2) -> None:
    """Strict JSON (NaN and infinities are refused, never written), atomically."""
    if not is_main():
        return
    tmp = temporary_path(path)
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=indent, allow_nan=False)
        handle.write("\n")
    os.replace(tmp, path)


def write_csv_atomically(rows: Sequence[Sequence[Any]], path: Path) -> None:
    if not is_main():
        return
    tmp = temporary_path(path)
    with open(tmp, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    os.replace(tmp, path)


def save_torch_atomically(state: Any, path: Path) -> None:
    if not is_main():
        return
    tmp = temporary_path(path)
    torch.save(state, tmp)
    os.replace(tmp, path)


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
