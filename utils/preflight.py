"""What a run needs from the file system, checked before any data or model is loaded: folders it will
write to, and a `--split_file` it will read. Nothing is created here."""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path

from utils.errors import InputError

SPLITS = ("train", "val", "test")


def check_run_paths(args: argparse.Namespace) -> None:
    """The run folder's parent and `--cache_dir` can be made and written to; `--split_file` is a valid split."""
    check_writable_folder(Path(args.output_dir) / args.script, "--output_dir", args.output_dir)
    if args.cache_dir is not None:
        check_writable_folder(Path(args.cache_dir), "--cache_dir", args.cache_dir)
    if args.split_file is not None:
        load_split_file(args.split_file)


def check_writable_folder(folder: Path, option: str, given: str) -> None:
    """`folder` is a folder, or can be made one, that this user can write to (`option given` says where it
    came from). Checks the nearest part of the path that exists."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{option} {given}: {existing} is a file; expected a folder (or a path where one can be made)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{option} {given}: cannot write to {existing}; expected a folder this user can write to")


def load_split_file(path: str) -> dict[str, list]:
    """The train, val and test lists of an earlier trial's split.json; an item may appear once in each list.
    Whether the items fit the data (and do not repeat across splits) is the data set's check."""
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError) as error:  # ValueError: not UTF-8, or not JSON
        raise InputError(f"cannot read --split_file {path}: {error}; "
                         "expected the UTF-8 JSON split.json of an earlier trial") from None
    if not isinstance(record, dict) or not all(isinstance(record.get(name), list) for name in SPLITS):
        raise InputError(f"--split_file {path} must hold lists 'train', 'val' and 'test'")
    for name in SPLITS:
        # JSON text as the key: items may be lists ([stem, label] pairs), which cannot be counted as they are.
        counts = Counter(json.dumps(item) for item in record[name])
        repeated = [(item, count) for item, count in counts.items() if count > 1]
        if repeated:
            item, count = repeated[0]
            raise InputError(f"--split_file {path}: {item} appears {count} times in {name!r} "
                             f"({len(repeated)} repeated items); expected each item once")
    return {name: record[name] for name in SPLITS}
