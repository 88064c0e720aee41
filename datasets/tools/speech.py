"""Spoken words from espeak-ng (the libespeak-ng shipped in the `espeakng-loader` wheel), via ctypes.

libespeak-ng is process-global state, so there is one synthesizer per process, created on first use
by `synthesizer()`. It is thread-unsafe by design: call it from one thread at a time (the demo
builders synthesise sequentially; a clip takes a few milliseconds).
"""

import _ctypes
import ctypes
from functools import cache
from math import gcd
from pathlib import Path

import espeakng_loader
import numpy as np
from scipy.signal import firwin, resample_poly

from utils.experiment import InputError

# English accents of espeak-ng 1.52 that initialise and sound different (`en-gb` does not initialise;
# `en-shaw` only changes spelling; `en-us-nyc` says 7 of the 10 digits exactly as `en-us`).
ACCENTS = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029")
VARIANTS = (
    "",
    *(f"+m{i}" for i in range(1, 8)),
    *(f"+f{i}" for i in range(1, 6)),
    "+klatt",
    *(f"+klatt{i}" for i in range(2, 7)),
)
VOICES = tuple(accent + variant for accent in ACCENTS for variant in VARIANTS)

RATE_RANGE = (80, 450)  # words per minute that espeak-ng accepts
PITCH_RANGE = (0, 99)

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_PARAM_RATE, _PARAM_PITCH = 1, 3
_POS_CHARACTER, _CHARS_UTF8 = 1, 1
_RAND_SEED = 1
_SILENCE = 0.01  # trim below 1 % of the clip's peak (-40 dB)
_MARGIN_SECONDS = 0.01

_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakSynthesizer:
    """Text to float32 mono waveforms with libespeak-ng. Use the process-wide `synthesizer()`."""

    def __init__(self) -> None:
        self._lib: ctypes.CDLL | None = None
        self._chunks: list[np.ndarray] = []
        # The library keeps only the raw function pointer: this object must outlive every synthesis.
        self._callback = _Callback(self._collect)

    def _collect(self, wav: "ctypes._Pointer[ctypes.c_short]", n_samples: int, _events: int) -> int:
        if wav and n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        return 0  # 0 = keep synthesising

    def _reload(self) -> int:
        """Load the library afresh and return its sample rate.

        The library carries static state from one utterance to the next (the pitch flutter phase)
        and seeds its noise from the clock, so the same call gives different audio depending on
        what was said before. Unloading it (it is opened nowhere else) and fixing the seed makes
        `say` a pure function of its arguments, for about 5 ms per utterance.
        """
        if self._lib is not None:
            self._lib.espeak_Terminate()
            _ctypes.dlclose(self._lib._handle)
            self._lib = None
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]
        # espeak_Initialize wants the folder that contains `espeak-ng-data`.
        data_parent = str(Path(espeakng_loader.get_data_path()).parent).encode()
        native_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent, 0)
        if native_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise from {data_parent.decode()}")
        lib.espeak_SetSynthCallback(self._callback)
        lib.espeak_ng_SetRandSeed(_RAND_SEED)
        self._lib = lib
        return native_rate

    def say(self, text: str, voice: str, rate: int, pitch: int, sample_rate: int) -> np.ndarray:
        """Speak `text`: float32 mono in [-1, 1] at `sample_rate`, leading and trailing silence trimmed.

        `rate` is in words per minute (80..450), `pitch` in 0..99 (50 is the voice's own).
        """
        if not RATE_RANGE[0] <= rate <= RATE_RANGE[1] or not PITCH_RANGE[0] <= pitch <= PITCH_RANGE[1]:
            raise InputError(
                f"espeak-ng rate {rate} / pitch {pitch}: expected rate in {RATE_RANGE}, pitch in {PITCH_RANGE}"
            )
        native_rate = self._reload()
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise InputError(
                f"unknown espeak-ng voice {voice!r}; expected e.g. 'en-us+m3' (see datasets.tools.speech.VOICES)"
            )
        self._lib.espeak_SetParameter(_PARAM_RATE, rate, 0)
        self._lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)
        self._chunks = []
        data = text.encode() + b"\0"
        status = self._lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self._lib.espeak_Synchronize()
        if status != 0 or not self._chunks:
            raise InputError(f"espeak-ng produced no audio for {text!r} in voice {voice!r}; expected speakable text")
        wave = _trim(np.concatenate(self._chunks).astype(np.float32) / 32768.0, native_rate)
        divisor = gcd(sample_rate, native_rate)
        up, down = sample_rate // divisor, native_rate // divisor
        resampled = resample_poly(wave, up, down, window=_low_pass(up, down))
        return np.clip(resampled, -1.0, 1.0).astype(np.float32)


@cache
def _low_pass(up: int, down: int) -> np.ndarray:
    """The anti-aliasing filter resample_poly designs by default (Kaiser window, beta 5), designed once per pair of
    rates instead of once per clip (about a sixth of the demo data's build time); float32, as it designs for float32."""
    max_rate = max(up, down)
    return firwin(20 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0)).astype(np.float32)


def _trim(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cut leading and trailing silence, keeping a short margin so onsets are not clipped."""
    loud = np.flatnonzero(np.abs(wave) > _SILENCE * np.abs(wave).max())
    if loud.size == 0:
        return wave
    margin = int(_MARGIN_SECONDS * sample_rate)
    return wave[max(loud[0] - margin, 0): loud[-1] + margin + 1]


_synthesizer: EspeakSynthesizer | None = None


def synthesizer() -> EspeakSynthesizer:
    """The process-wide synthesizer, created on first use (not thread-safe)."""
    global _synthesizer
    if _synthesizer is None:
        _synthesizer = EspeakSynthesizer()
    return _synthesizer
