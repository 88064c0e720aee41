"""A run's folder: created new for every run, its log, and the code's git commit."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

from utils.distributed import is_main
from utils.errors import InputError


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
