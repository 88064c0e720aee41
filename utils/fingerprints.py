"""Content fingerprints: short hashes of what a data set or a model's weights hold, by content (not names, sizes or
dates, which a copy such as `cp -p` or `rsync -a` keeps). The teacher cache on disk is keyed by them, so `models/`
and `datasets/` fingerprint their weights and data with these.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def fingerprint_of(parts: Sequence[Any]) -> str:
    """A short hash of whatever identifies a data set (array bytes, strings, numbers)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(repr(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:24]


def hash_path(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (each relative name and its bytes, in sorted order):
    the content, not names, sizes or dates, which a copy such as `cp -p` or `rsync -a` keeps."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:24]


def hash_files(paths: Sequence[Path]) -> str:
    """A short hash of the bytes of `paths`, in order."""
    return fingerprint_of([hash_path(path) for path in paths])
