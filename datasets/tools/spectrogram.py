"""The AVMNIST audio image: a 112×112 uint8 log-power spectrogram of a spoken digit.

Choices (deterministic, independent of the other clips):
- STFT with a periodic Hann window of 222 samples (rfft gives exactly 112 bins from 0 Hz to
  Nyquist; 27.75 ms at 8 kHz) and a 10 ms hop, so 112 frames cover 1.12 s. Shorter clips are padded
  with silence at the end; longer ones are squeezed to 112 frames by linear interpolation in time,
  which keeps every word (spoken digits last 0.3-1 s; the longest FSDD recordings about 2.3 s).
- Power in dB relative to the clip's own peak, the top 60 dB mapped linearly onto 0..255 (below
  that is mostly noise and quantisation). Scaling per clip makes the image independent of the
  recording level, which differs between speakers.
- Rows are frequency bins (row 0 = 0 Hz), columns are time frames.
"""

import numpy as np
from scipy.signal import get_window

SIZE = 112
_N_FFT = 2 * (SIZE - 1)
_HOP_SECONDS = 0.01
_DYNAMIC_RANGE_DB = 60.0


def log_power_spectrogram(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """uint8 (112 frequency bins × 112 frames) log-power spectrogram of a mono waveform."""
    wave = np.asarray(wave, dtype=np.float64)
    if wave.ndim != 1:
        raise ValueError(f"log_power_spectrogram: expected a mono (1-D) waveform, got shape {wave.shape}")
    if wave.size < _N_FFT:
        wave = np.pad(wave, (0, _N_FFT - wave.size))
    hop = max(1, round(_HOP_SECONDS * sample_rate))
    frames = np.lib.stride_tricks.sliding_window_view(wave, _N_FFT)[::hop]
    power = np.abs(np.fft.rfft(frames * get_window("hann", _N_FFT), axis=1)) ** 2  # (frames, bins)
    peak = power.max()
    if peak == 0:
        return np.zeros((SIZE, SIZE), np.uint8)
    floor = 10.0 ** (-_DYNAMIC_RANGE_DB / 10.0)
    decibels = 10.0 * np.log10(np.maximum(power / peak, floor))
    image = (decibels + _DYNAMIC_RANGE_DB) * (255.0 / _DYNAMIC_RANGE_DB)
    image = image.T  # (bins, frames)
    n_frames = image.shape[1]
    if n_frames < SIZE:
        image = np.pad(image, ((0, 0), (0, SIZE - n_frames)))  # 0 = silence, the floor
    elif n_frames > SIZE:
        position = np.linspace(0.0, n_frames - 1, SIZE)
        left = np.floor(position).astype(int)
        right = np.minimum(left + 1, n_frames - 1)
        weight = position - left
        image = image[:, left] * (1.0 - weight) + image[:, right] * weight
    return np.rint(image).astype(np.uint8)
