"""A run's folder: a new folder for every run, its one writer (a lock), its log, the code's git commit, the kinds of
its entries, and files written so that a reader sees the old file or the new one, never a half-written one (the
files' formats: utils/run_files.py).

A write goes to `<name>.tmp.<host>.<pid>` and is renamed over the target. A writer killed in between leaves its
temporary file behind: it is never read, and `remove_stale_temporaries` deletes those of dead processes of this
host (a process of another host, which may share the folder over NFS, cannot be seen from here: its files stay).
In a run of several processes (torchrun) only the first writes; the others' writes do nothing.
"""

from __future__ import annotations

import csv
import datetime
import errno
import fcntl
import itertools
import json
import os
import shutil
import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from utils.distributed import is_main
from utils.experiment import InputError
from utils.run_files import LOCK_FILE, RUN_FILES, TRIAL_FILES, TRIAL_FOLDERS

TEMPORARY = ".tmp."


def make_run_dir(output_dir: str, script: str, label: str, name: str | None = None) -> tuple[Path, list[Path]]:
    """A new folder `output_dir/<script>/<YYYYmmdd-HHMMSS>_<label>[_k]` (label e.g. seed42), never an existing one;
    with `name`, the run's own folder `output_dir/<script>/<name>` (a run of that name may have left it without
    its args.json: it is taken over). Also the folders this made, innermost first, for `remove_made`."""
    parent = Path(output_dir) / script
    made = list(itertools.takewhile(lambda folder: not folder.exists(), [parent, *parent.parents]))
    parent.mkdir(parents=True, exist_ok=True)
    if name is not None:
        try:
            (parent / name).mkdir()
            made.insert(0, parent / name)
        except FileExistsError:
            pass
        return parent / name, made
    stem = f"{datetime.datetime.now():%Y%m%d-%H%M%S}_{label}"
    for suffix in ["", *(f"_{k}" for k in range(2, 10_000))]:
        try:
            (parent / (stem + suffix)).mkdir()
            return parent / (stem + suffix), [parent / (stem + suffix), *made]
        except FileExistsError:
            continue
    raise InputError(f"could not create a new run folder under {parent}")


def remove_made(made: Sequence[Path]) -> None:
    """Undo `make_run_dir` (`made`, innermost first): the run's folder with whatever is in it, then each parent it
    made while that is empty."""
    if made:
        shutil.rmtree(made[0], ignore_errors=True)
    for folder in made[1:]:
        try:
            folder.rmdir()
        except OSError:  # something else was put there meanwhile
            return


def check_kinds(folder: Path, files: Sequence[str], folders: Sequence[str]) -> None:
    """Each of `files` in `folder` is a regular file or absent, each of `folders` a folder or absent (InputError)."""
    for names, kind, is_kind in ((files, "file", Path.is_file), (folders, "folder", Path.is_dir)):
        for name in names:
            path = folder / name
            if path.exists() and not is_kind(path):
                raise InputError(f"{path} is not a {kind}; expected a {kind} there (or nothing)")


def check_run_folder_kinds(folder: Path, n_times: int) -> None:
    """Every entry a run reads or writes in its folder, and in each of its `n_times` trial folders, is a file or a
    folder as the run makes it, or absent (InputError)."""
    check_kinds(folder, files=RUN_FILES, folders=[f"trial{k}" for k in range(n_times)])
    for k in range(n_times):
        check_kinds(folder / f"trial{k}", files=TRIAL_FILES, folders=TRIAL_FOLDERS)


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
    """`with locked_run_folder(run_dir):` this process is the one writer of `run_dir`. The lock is a POSIX record
    lock (`fcntl.lockf`) on the folder's regular file `lock`, opened for writing: NFS (through its lock service)
    and Lustre (mounted with `flock`) pass such locks to their server, so processes of other machines see it.
    The system drops it when the process ends, however it ends, so a lock left by a killed run never blocks a
    resume. While held, the file names the holder's host and process id, and a second command is refused at
    once naming them; released, it is emptied. A filesystem that cannot lock refuses every command: it could
    not keep a second writer out. Only the first of several processes writes, so only it locks.

    A POSIX lock belongs to the process, and closing any descriptor of its file releases it: nothing else in
    a run opens this file."""
    if not is_main():
        yield
        return
    path = run_dir / LOCK_FILE
    existed = path.exists()
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise InputError(f"cannot open {path} for writing ({error.strerror}); expected a run folder this user can "
                         f"write to, whose {LOCK_FILE} is a file") from None
    try:
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EACCES, errno.EAGAIN):  # POSIX allows either for a lock held by another
                raise InputError(f"{run_dir} is in use by {_lock_holder(path)}, which runs or resumes it; expected "
                                 "one command at a time on a run folder (wait for it to end, or stop it)") from None
            if not existed:
                path.unlink(missing_ok=True)
            raise InputError(f"cannot lock {path} ({errno.errorcode.get(error.errno, error.errno)}: "
                             f"{error.strerror}), so a second command on the run could not be kept out; expected "
                             "a filesystem with POSIX locks (a local disk, NFS with its lock service, Lustre "
                             "mounted with -o flock)") from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{socket.gethostname()} {os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(descriptor, 0)
    finally:
        os.close(descriptor)


def _lock_holder(path: Path) -> str:
    """Who holds the lock, as its file names them: "process PID on HOST"."""
    try:
        host, pid = path.read_text().split()
    except (OSError, ValueError):  # taken a moment ago, and not yet named
        return "another process"
    return f"process {pid} on {host}"


def temporary_path(path: Path) -> Path:
    """Where a write of `path` goes before it is renamed over it."""
    return path.with_name(f"{path.name}{TEMPORARY}{writer()}")


def writer() -> str:
    """This process, as a temporary file's name records its writer: `<host>.<pid>`."""
    return f"{socket.gethostname()}.{os.getpid()}"


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


def writer_alive(name: str) -> bool:
    """Whether the writer `<host>.<pid>` (as `writer()` names it) may still run: a process of another host cannot
    be seen from here, so it may; neither may anything that is not such a name be judged dead."""
    host, _, pid = name.rpartition(".")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files of killed writers of this host in `folder` (not of writers still running, nor of
    other hosts'); return them."""
    removed = []
    for path in folder.glob(f"*{TEMPORARY}*"):
        if path.is_file() and not writer_alive(path.name.rsplit(TEMPORARY, 1)[1]):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
