"""WAV reading for every experiment: soundfile (torchaudio.load needs FFmpeg), mono float32, 16 kHz."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional

from utils.experiment import InputError

TARGET_RATE = 16_000
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")  # the WAV encodings that can hold NaN, inf or huge values
# Far beyond any recording (PCM reads within +-1), far below where a clip's variance overflows float32 (~1e19).
MAX_SAMPLE = 1e6
_announced_rates: set[int] = set()


def read_waveform(path: str | Path, sample_rate: int = TARGET_RATE, max_seconds: float | None = None) -> np.ndarray:
    """Mono float32 samples of `path` at `sample_rate`, cut to the first `max_seconds` if given.

    Another source rate is resampled, with a notice the first time each rate is seen. An empty file, or
    one holding NaN or inf (only float WAVs can), is an InputError.
    """
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
        raise _unreadable(path, error) from None
    if samples.size == 0:  # before resampling, which fails on no samples
        raise _empty(path)
    if not np.isfinite(samples).all():
        raise InputError(f"WAV {path} holds non-finite samples (NaN or inf); expected finite audio")
    peak = float(np.abs(samples).max())
    if peak > MAX_SAMPLE:  # float WAVs may hold any float32; squares of such samples overflow in normalisation
        raise InputError(f"WAV {path} holds samples up to {peak:.3g}; expected audio within +-{MAX_SAMPLE:g} "
                         "(float WAVs are nominally within +-1)")
    samples = samples.mean(axis=1)
    if rate != sample_rate:
        if rate not in _announced_rates:
            _announced_rates.add(rate)
            print(f"notice: resampling audio from {rate} Hz to {sample_rate} Hz (first seen in {path})", file=sys.stderr)
        samples = torchaudio.functional.resample(torch.from_numpy(samples), rate, sample_rate).numpy()
    if max_seconds is not None:
        samples = samples[: int(max_seconds * sample_rate)]
        if samples.size == 0:
            raise InputError(f"--max_audio_seconds {max_seconds} keeps no sample of {path}; expected a longer cut")
    return np.ascontiguousarray(samples, dtype=np.float32)


def check_wav(path: str | Path) -> None:
    """What can be known of a WAV before training without decoding it: a readable header and at least one
    sample. Float WAVs are read in full: unlike PCM, they can hold NaN, inf or values that overflow."""
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
        raise _unreadable(path, error) from None
    if info.frames == 0:
        raise _empty(path)
    if info.subtype in FLOAT_SUBTYPES:
        read_waveform(path, sample_rate=info.samplerate)


def _unreadable(path: str | Path, error: Exception) -> InputError:
    return InputError(f"cannot read WAV {path}: {error}; expected a readable PCM WAV file")


def _empty(path: str | Path) -> InputError:
    return InputError(f"WAV {path} holds no samples; expected audio")
