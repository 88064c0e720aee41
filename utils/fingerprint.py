"""Short hashes that name a data set or a file list: part of the disk teacher-cache key."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def fingerprint_of(parts: Sequence[Any]) -> str:
    """A short hash of whatever identifies a data set (array bytes, file names, sizes, times)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(repr(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:24]


def file_stats(paths: Sequence[Path]) -> list[tuple[str, int, int]]:
    """(name, size, mtime) of each file: cheap to read, and changes whenever a file is rewritten."""
    stats = []
    for path in paths:
        info = os.stat(path)
        stats.append((Path(path).name, info.st_size, info.st_mtime_ns))
    return stats
