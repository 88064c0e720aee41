"""WAV reading for every experiment: soundfile (torchaudio.load needs FFmpeg), mono float32, 16 kHz."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional

from utils.errors import InputError

TARGET_RATE = 16_000
_announced_rates: set[int] = set()


def read_waveform(path: str | Path, sample_rate: int = TARGET_RATE, max_seconds: float | None = None) -> np.ndarray:
    """Mono float32 samples of `path` at `sample_rate`, cut to the first `max_seconds` if given.

    Another source rate is resampled, with a notice the first time each rate is seen.
    """
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
        raise InputError(f"cannot read WAV {path}: {error}; expected a readable PCM WAV file") from None
    samples = samples.mean(axis=1)
    if rate != sample_rate:
        if rate not in _announced_rates:
            _announced_rates.add(rate)
            print(f"notice: resampling audio from {rate} Hz to {sample_rate} Hz (first seen in {path})", file=sys.stderr)
        samples = torchaudio.functional.resample(torch.from_numpy(samples), rate, sample_rate).numpy()
    if max_seconds is not None:
        samples = samples[: int(max_seconds * sample_rate)]
    if samples.size == 0:
        raise InputError(f"WAV {path} holds no samples; expected audio")
    return np.ascontiguousarray(samples, dtype=np.float32)
