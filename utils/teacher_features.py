"""Where the training loop gets teacher features: a cache computed once, or the teacher run in the loop.

The teacher is frozen, so its output for a given input never changes: computing it again at every
step (as the original did, with autograd on) is pure waste. Both sources answer the same question,
"the teacher features of these teacher-input keys", so the loop cannot tell them apart.

A *key* is an integer naming one teacher input of the run (`utils.experiment.TeacherInputs`).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from utils.device import autocast
from utils.distributed import gather_objects, gather_rows, is_main, share
from utils.experiment import InputError, Teacher, TeacherInputs
from utils.run_folder import remove_stale_temporaries, temporary_path

TeacherSource = Callable[[np.ndarray], torch.Tensor]  # features (B x D) of B teacher-input keys (on the host)


class InLoopTeacher:
    """`--teacher_cache off`: run the teacher on each batch's partner inputs, without a graph."""

    def __init__(self, teacher: Teacher, inputs: TeacherInputs, device: torch.device,
                 amp_dtype: torch.dtype | None = None) -> None:
        self.teacher, self.inputs, self.device, self.amp_dtype = teacher, inputs, device, amp_dtype

    def prepare(self, keys: np.ndarray) -> None:
        """Nothing to precompute."""

    @torch.no_grad()
    def __call__(self, keys: np.ndarray) -> torch.Tensor:
        inputs = [self.inputs[k] for k in keys.tolist()]  # read outside autocast: it would also cast resampling
        with autocast(self.device, self.amp_dtype):
            return self.teacher.encode(inputs).float()


def cache_key(teacher_identity: str, data_fingerprint: str, amp_dtype: torch.dtype | None, device_type: str,
              block: int) -> str:
    """The disk cache's key: everything that changes a feature. The teacher's weights and preprocessing, the
    data (both by content), and the arithmetic: autocast's dtype, the kind of device and the block of inputs
    computed together."""
    parts = [teacher_identity, data_fingerprint, f"amp={amp_dtype}", f"device={device_type}", f"block={block}"]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class TeacherFeatureCache:
    """Each distinct teacher feature the run needs, computed once (inference mode), kept on the training device
    and served by key.

    Features are computed in fixed blocks of keys: keys k with the same k // `teacher.cache_block` (the last
    block cut at the number of inputs), a block always whole and in key order, so that a feature depends on the
    data and the teacher only, never on which other keys happened to be missing with it: a resumed run, a run
    on a cache that another run grew, or a run of another number of processes gets the very features of a run
    that computed them all at once. A teacher whose feature of an input depends on its batch-mates (padding)
    declares blocks of one. Keys are looked up on the host, so serving a batch reads nothing back from the
    device.

    With `cache_dir` the features also live in one safetensors file per (teacher, data) pair, so later trials
    and runs reuse them; the file holds its key and a digest of its contents, and one that does not match or
    cannot be read is reported and rebuilt.
    """

    def __init__(self, teacher: Teacher, inputs: TeacherInputs, device: torch.device,
                 amp_dtype: torch.dtype | None = None, cache_dir: str | Path | None = None,
                 progress: bool = True) -> None:
        self.teacher, self.inputs, self.device, self.amp_dtype = teacher, inputs, device, amp_dtype
        self.progress = progress
        self.row_of_key = np.full(len(inputs), -1, dtype=np.int64)  # on the host: lookups need no device read
        self.features = torch.empty(0, teacher.dim, device=device)
        self.computed = 0  # features computed by this process (tests check that a reuse computes none)
        self.loaded = 0
        self.build_seconds = 0.0
        self.path = self.key = None
        if cache_dir is not None:
            self.key = cache_key(teacher.identity, inputs.fingerprint, amp_dtype, device.type, teacher.cache_block)
            self.path = Path(cache_dir) / f"teacher_features_{self.key[:24]}.safetensors"
            if self.path.exists() and not self.path.is_file():
                raise InputError(f"--cache_dir {cache_dir}: {self.path} is not a file; expected this run's teacher "
                                 "cache file there (or nothing)")
            if self.path.parent.is_dir():
                remove_stale_temporaries(self.path.parent)
            self._load()

    @property
    def nbytes(self) -> int:
        return self.features.numel() * self.features.element_size()

    def __len__(self) -> int:
        return self.features.shape[0]

    def prepare(self, keys: np.ndarray) -> None:
        """Make sure the features of `keys` are present; compute each block that misses one, whole (with several
        processes, each computes whole blocks of its share and every process ends with all of them)."""
        keys = np.unique(keys)
        missing = keys[self.row_of_key[keys] < 0]
        if not len(missing):
            return
        start = time.perf_counter()
        size = self.teacher.cache_block
        blocks = [np.arange(first, min(first + size, len(self.inputs))) for first in np.unique(missing // size) * size]
        mine = blocks[share(len(blocks))]
        computed = [torch.empty(0, self.teacher.dim, device=self.device)]
        count = sum(map(len, mine))
        with torch.inference_mode(), tqdm(total=count, desc="teacher features", leave=False, file=sys.stderr,
                                          disable=not self.progress or not is_main()) as bar:
            for block in mine:
                inputs = [self.inputs[key] for key in block.tolist()]  # outside autocast: it would cast resampling
                with autocast(self.device, self.amp_dtype):
                    computed.append(self.teacher.encode(inputs).float().to(self.device))
                bar.update(len(block))
        block_keys = np.concatenate(blocks)
        self._add(block_keys, gather_rows(torch.cat(computed)))
        self.computed += count
        shares = gather_objects(count)
        seconds = time.perf_counter() - start
        self.build_seconds += seconds
        saved = ""
        if self.path is not None and is_main():
            self._save()
            saved = f", saved to {self.path}"
        # One line per build, so that a user (and the tests) can tell a reuse from a recomputation.
        by = f" ({' + '.join(map(str, shares))} by {len(shares)} processes)" if len(shares) > 1 else ""
        if is_main():
            print(f"teacher features: {len(block_keys)} computed in {seconds:.1f} s{by}{saved}", file=sys.stderr)

    def __call__(self, keys: np.ndarray) -> torch.Tensor:
        rows = self.row_of_key[keys]
        if (rows < 0).any():
            raise KeyError("teacher feature requested for a key that was never prepared")
        index = torch.from_numpy(rows)
        if self.device.type == "cuda":  # pinned, so that the copy does not wait for the device
            index = index.pin_memory().to(self.device, non_blocking=True)
        return self.features[index]

    def _add(self, keys: np.ndarray, features: torch.Tensor) -> None:
        # Rows are created outside inference mode so that training may index them freely.
        with torch.inference_mode(False):
            self.row_of_key[keys] = np.arange(len(self), len(self) + len(keys))
            self.features = torch.cat([self.features, features.clone()])

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            with safe_open(str(self.path), framework="pt", device="cpu") as stored:
                metadata = stored.metadata() or {}
                keys, features = stored.get_tensor("keys"), stored.get_tensor("features")
            problem = self._check(keys, features, metadata)
        except (SafetensorError, KeyError, OSError, RuntimeError, ValueError) as error:
            problem = f"unreadable ({str(error).splitlines()[0] if str(error) else type(error).__name__})"
        if problem:
            print(f"warning: teacher cache {self.path} is corrupted: {problem}; rebuilding it", file=sys.stderr)
            self.path.unlink(missing_ok=True)  # another run may have replaced or removed it meanwhile
            return
        self._add(keys.numpy(), features.to(self.device))
        self.loaded = len(keys)
        print(f"teacher features: {self.loaded} loaded from {self.path}", file=sys.stderr)

    def _check(self, keys: torch.Tensor, features: torch.Tensor, metadata: dict[str, str]) -> str | None:
        if keys.dtype != torch.long or features.dtype != torch.float32:
            return f"dtypes {keys.dtype} and {features.dtype}; expected int64 keys and float32 features"
        if features.ndim != 2 or features.shape[1] != self.teacher.dim or keys.shape != (features.shape[0],):
            return f"shapes {tuple(keys.shape)} and {tuple(features.shape)} do not match dim {self.teacher.dim}"
        if keys.numel() and (int(keys.min()) < 0 or int(keys.max()) >= len(self.inputs)
                             or len(torch.unique(keys)) != len(keys)):
            return "keys out of range or repeated"
        if metadata.get("key") != self.key:
            return "it was written for another teacher, data or arithmetic (its stored key differs)"
        if metadata.get("digest") != contents_digest(keys, features):
            return "its contents differ from their stored digest"
        if not bool(torch.isfinite(features).all()):
            return "non-finite features"
        return None

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.flatnonzero(self.row_of_key >= 0)
        stored = {"keys": torch.from_numpy(keys), "features": self.features[torch.from_numpy(self.row_of_key[keys])]}
        stored = {name: tensor.cpu().contiguous() for name, tensor in stored.items()}
        tmp = temporary_path(self.path)
        try:
            save_file(stored, str(tmp), metadata={"key": self.key, "digest": contents_digest(**stored),
                                                  "teacher": self.teacher.identity, "data": self.inputs.fingerprint})
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)


def contents_digest(keys: torch.Tensor, features: torch.Tensor) -> str:
    """sha256 of a cache file's keys and features: a file whose features were overwritten no longer matches it."""
    digest = hashlib.sha256(keys.numpy().tobytes())
    digest.update(features.numpy().tobytes())
    return digest.hexdigest()
