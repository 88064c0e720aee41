"""Small, learnable synthetic data sets in the real layouts, for tests and quick checks.

    python -m datasets.tools.synthetic avmnist OUT [--n_train 200 --n_test 60 --layout original|multibench]
    python -m datasets.tools.synthetic iemocap OUT

AVMNIST: the label is recoverable from the image (a bright block at a class-specific place), from
the spectrogram (a bright class-specific frequency band) and from the WAV (a class-specific tone).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile

from datasets.tools.synthetic_iemocap import write_synthetic_iemocap

WAV_RATE = 8_000


def _images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    images = rng.integers(0, 60, size=(len(labels), 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 4)
        images[i, 2 + 8 * row: 8 + 8 * row, 2 + 6 * col: 8 + 6 * col] = rng.integers(200, 256)
    return images


def _spectrograms(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    spectrograms = rng.integers(0, 70, size=(len(labels), 112, 112)).astype(np.uint8)
    for i, label in enumerate(labels):
        band = 4 + 11 * int(label)
        spectrograms[i, band: band + 7, :] = rng.integers(180, 256)
    return spectrograms


def _tone(label: int, rng: np.random.Generator) -> np.ndarray:
    seconds = rng.uniform(0.25, 0.6)
    t = np.arange(int(seconds * WAV_RATE)) / WAV_RATE
    wave = 0.5 * np.sin(2 * np.pi * (300 + 150 * label) * t) + 0.02 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


def write_synthetic_avmnist(out: str | Path, n_train: int = 200, n_test: int = 60, seed: int = 0,
                            layout: str = "original") -> Path:
    """Write a synthetic AVMNIST to `out` and return it."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    labels = {"train": np.arange(n_train) % 10, "test": np.arange(n_test) % 10}
    labels = {split: rng.permutation(values).astype(np.int64) for split, values in labels.items()}
    for split, values in labels.items():
        images, spectrograms = _images(values, rng), _spectrograms(values, rng)
        pca_images = np.clip(images.reshape(len(values), 784) + rng.normal(0, 3, (len(values), 784)), 0, 255)
        arrays = ({"image_pca": pca_images.astype(np.float32), "image": images, "spectrogram": spectrograms}
                  if layout == "original" else {"image": pca_images.astype(np.float32), "audio": spectrograms})
        for folder, array in arrays.items():
            (out / folder).mkdir(parents=True, exist_ok=True)
            np.save(out / folder / f"{split}_data.npy", array)
        np.save(out / f"{split}_labels.npy", values)
    if layout == "original":
        (out / "audio").mkdir(exist_ok=True)
        for key, label in enumerate(np.concatenate([labels["train"], labels["test"]])):
            soundfile.write(out / "audio" / f"audio_mnist_{key + 1}.wav", _tone(int(label), rng), WAV_RATE,
                            subtype="PCM_16")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets.tools.synthetic", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("avmnist", "iemocap"))
    parser.add_argument("out")
    parser.add_argument("--n_train", type=int, default=200, help="AVMNIST train items")
    parser.add_argument("--n_test", type=int, default=60, help="AVMNIST test items")
    parser.add_argument("--layout", choices=("original", "multibench"), default="original")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.kind == "avmnist":
        out = write_synthetic_avmnist(args.out, args.n_train, args.n_test, args.seed, args.layout)
        print(f"synthetic AVMNIST ({args.layout} layout) written to {out}")
    else:
        out = write_synthetic_iemocap(Path(args.out), seed=args.seed)
        print(f"synthetic IEMOCAP written to {out} (--audio_dir {out} --text_dir {out / 'IEMOCAP' / 'texts'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
