"""Datasets and collate functions for waveform and text students: items, padding, attention masks."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.audio import check_wav, read_waveform
from utils.experiment import Batch, InputError
from utils.fingerprints import fingerprint_of, hash_files


def pad_waveforms(waveforms: list[np.ndarray], min_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D waveforms to max(longest, ``min_length``) samples.

    Returns ``input_values`` (B x T float32) and ``attention_mask`` (B x T long, 1 on real samples).
    """
    if not waveforms:
        raise ValueError("pad_waveforms needs at least one waveform")
    length = max(max(len(w) for w in waveforms), min_length)
    values = torch.zeros(len(waveforms), length, dtype=torch.float32)
    mask = torch.zeros(len(waveforms), length, dtype=torch.long)
    for i, wave in enumerate(waveforms):
        values[i, : len(wave)] = torch.as_tensor(wave, dtype=torch.float32)
        mask[i, : len(wave)] = 1
    return values, mask


class WaveformFiles:
    """Raw 16 kHz waveforms of a list of WAV files, read on demand (optionally the first seconds only).

    Every file is checked when the list is made (`check_wav`: its header, and float WAVs for NaN), so that
    a bad file ends the run before training rather than in the middle of it, perhaps in a DataLoader worker.
    Also the teacher inputs of A->V and A->T, so it carries a fingerprint of the files.
    """

    def __init__(self, paths: Sequence[Path], max_seconds: float | None = None) -> None:
        self.paths, self.max_seconds = list(paths), max_seconds
        for path in self.paths:
            check_wav(path)

    @cached_property
    def fingerprint(self) -> str:
        """The files' bytes, hashed on first use (only the disk cache needs it)."""
        return fingerprint_of(["waveforms", self.max_seconds, hash_files(self.paths)])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return read_waveform(self.paths[index], max_seconds=self.max_seconds)


class Texts(list):
    """Strings by index (transcripts, template sentences), with a fingerprint as teacher inputs."""

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(["texts", *self])


class LabelledItems(Dataset):
    """(source[index], label, position) for the indices of one split, e.g. waveforms or transcripts."""

    def __init__(self, source: Sequence, labels: Sequence[int], indices: np.ndarray,
                 transform: Callable | None = None) -> None:
        self.source, self.labels, self.indices, self.transform = source, labels, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple:
        index = int(self.indices[position])
        item = self.source[index]
        return (self.transform(item) if self.transform else item), int(self.labels[index]), position


def _labels_positions(items: list[tuple]) -> tuple[torch.Tensor, np.ndarray]:
    return torch.tensor([item[1] for item in items]), np.array([item[2] for item in items], dtype=np.int64)


class WaveformCollate:
    """Pads a batch of waveforms to at least `min_length` samples: the student's time masking needs
    `mask_time_length` frames, so even a batch of very short utterances is padded that far. Each utterance
    needs `shortest` samples (one frame of the student); its length also goes to the student, on the host
    (`sample_lengths`), so that the student need not read it back from the device."""

    def __init__(self, min_length: int, shortest: int) -> None:
        self.min_length, self.shortest = min_length, shortest

    def __call__(self, items: list[tuple]) -> Batch:
        waveforms = [item[0] for item in items]
        lengths = np.array([len(wave) for wave in waveforms], dtype=np.int64)
        if lengths.min() < self.shortest:
            raise InputError(f"an utterance has {lengths.min()} samples, fewer than the {self.shortest} of one frame "
                             "of the wav2vec2 student; expected longer utterances (or a larger --max_audio_seconds)")
        values, mask = pad_waveforms(waveforms, self.min_length)
        return Batch({"input_values": values, "attention_mask": mask, "sample_lengths": lengths},
                     *_labels_positions(items))


class TokenizingCollate:
    """Tokenizes a batch of texts with the student's tokenizer (padding, truncation)."""

    def __init__(self, tokenize: Callable[[list[str]], dict[str, torch.Tensor]]) -> None:
        self.tokenize = tokenize

    def __call__(self, items: list[tuple]) -> Batch:
        return Batch(dict(self.tokenize([item[0] for item in items])), *_labels_positions(items))

