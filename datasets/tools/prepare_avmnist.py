"""Build the original AVMNIST layout from public sources: MNIST and the Free Spoken Digit Dataset.

    python -m datasets.tools.prepare_avmnist --mnist_dir M --fsdd_dir F --out D

- M holds the four MNIST idx files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
  `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, optionally `.gz`, or with `.idx` for `-idx`).
- F (or F/recordings) holds FSDD's `{digit}_{speaker}_{index}.wav` (8 kHz mono). Recordings with
  index 40-49 speak for the test items, the others for the training items: the i-th item of digit d
  in a split gets that split's (i mod n_d)-th recording of d, sorted by speaker then index.
- `image_pca` keeps the first 196 principal components of the training images (a quarter of 784).

The output is deterministic and written atomically (see `datasets.tools.avmnist_writer`). Differences
from the original AVMNIST: its audio was FSDD mixed with ESC-50 noise, and its spectrogram
parameters are not published; here the recordings are clean and `datasets.tools.spectrogram` defines them.
"""

import argparse
import gzip
import re
import sys
from pathlib import Path

import numpy as np
import soundfile
from tqdm import tqdm

from datasets.tools.avmnist_writer import (
    AUDIO_RATE,
    AVMNISTSplit,
    build_atomically,
    cycle_pools,
    pca_reconstruct,
    write_avmnist,
)
from utils.experiment import InputError

PCA_COMPONENTS = 196
TEST_RECORDINGS = range(40, 50)
_IMAGES_MAGIC, _LABELS_MAGIC = 0x00000803, 0x00000801  # unsigned bytes, 3 resp. 1 dimensions
_RECORDING = re.compile(r"(\d)_([^_]+)_(\d+)\.wav")


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An idx file (optionally gzipped) as a uint8 array, checking its magic number and size."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as error:
        raise InputError(f"{path}: unreadable ({error}); expected an MNIST idx file") from None
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found != magic:
        shown = "none" if found is None else f"{found:#010x}"
        raise InputError(f"{path}: magic number {shown}, expected {magic:#010x}; not an MNIST idx file of this kind")
    n_dims = magic & 0xFF
    header = 4 + 4 * n_dims
    if len(raw) < header:
        raise InputError(f"{path}: truncated header; expected {n_dims} dimension sizes")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", n_dims, offset=4))
    data = np.frombuffer(raw, np.uint8, offset=header)
    if data.size != np.prod(dims):
        raise InputError(f"{path}: {data.size} data bytes, expected {int(np.prod(dims))} for dimensions {dims}")
    return data.reshape(dims)


def _idx_path(mnist_dir: Path, name: str) -> Path:
    for candidate in (name, f"{name}.gz", name.replace("-idx", ".idx"), f"{name.replace('-idx', '.idx')}.gz"):
        if (mnist_dir / candidate).is_file():
            return mnist_dir / candidate
    raise InputError(f"{mnist_dir}: missing {name} (or {name}.gz); expected the four MNIST idx files")


def load_mnist(mnist_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (images uint8 N×28×28, labels int64), "test": ...} from the MNIST idx files."""
    if not mnist_dir.is_dir():
        raise InputError(f"--mnist_dir {mnist_dir}: not a folder; expected the folder of the MNIST idx files")
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_idx_path(mnist_dir, f"{prefix}-images-idx3-ubyte"), _IMAGES_MAGIC)
        labels = read_idx(_idx_path(mnist_dir, f"{prefix}-labels-idx1-ubyte"), _LABELS_MAGIC).astype(np.int64)
        if images.shape[1:] != (28, 28) or len(images) != len(labels) or labels.max(initial=0) > 9 or not len(labels):
            raise InputError(
                f"{mnist_dir}: {split} images {images.shape} with {len(labels)} labels up to {labels.max(initial=0)}; "
                "expected N×28×28 images, N > 0 labels in 0..9"
            )
        splits[split] = (images, labels)
    return splits


def find_recordings(fsdd_dir: Path) -> dict[str, dict[int, list[Path]]]:
    """FSDD recordings per split ("train", "test") and digit, sorted by speaker, then index."""
    if not fsdd_dir.is_dir():
        raise InputError(f"--fsdd_dir {fsdd_dir}: not a folder; expected the Free Spoken Digit Dataset")
    folder = fsdd_dir / "recordings" if (fsdd_dir / "recordings").is_dir() else fsdd_dir
    found = []
    for path in folder.iterdir():
        match = _RECORDING.fullmatch(path.name)
        if match:
            found.append((match[2], int(match[3]), int(match[1]), path))
    recordings: dict[str, dict[int, list[Path]]] = {"train": {}, "test": {}}
    for speaker, index, digit, path in sorted(found):
        split = "test" if index in TEST_RECORDINGS else "train"
        recordings[split].setdefault(digit, []).append(path)
    return recordings


def _read_recording(path: Path) -> np.ndarray:
    try:
        wave, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (OSError, RuntimeError) as error:  # soundfile.LibsndfileError is a RuntimeError
        raise InputError(f"{path}: unreadable WAV ({error}); expected an 8 kHz mono recording") from None
    if rate != AUDIO_RATE or wave.shape[1] != 1:
        raise InputError(f"{path}: {rate} Hz, {wave.shape[1]} channel(s); expected {AUDIO_RATE} Hz mono")
    return wave[:, 0]


def prepare_avmnist(mnist_dir: Path, fsdd_dir: Path, out: Path, progress: bool = True) -> Path:
    """Write the AVMNIST layout to the new folder `out` and return it."""
    if out.exists():
        raise InputError(f"--out {out} already exists; expected a new folder (remove it to rebuild)")
    mnist = load_mnist(mnist_dir)
    recordings = find_recordings(fsdd_dir)
    paths: list[Path] = []  # every recording read once, however many items it speaks for
    clip_index = {}
    for split, (_, labels) in mnist.items():
        pools = {}
        for digit in np.unique(labels).tolist():
            digit_paths = recordings[split].get(digit, [])
            if not digit_paths:
                where = "in" if split == "test" else "outside"
                raise InputError(
                    f"{fsdd_dir}: no {split} recording of digit {digit}; expected {digit}_<speaker>_<index>.wav "
                    f"with index {where} {TEST_RECORDINGS.start}-{TEST_RECORDINGS.stop - 1}"
                )
            pools[digit] = range(len(paths), len(paths) + len(digit_paths))
            paths.extend(digit_paths)
        clip_index[split] = cycle_pools(labels, pools)
    clips = [_read_recording(path) for path in tqdm(paths, "reading recordings", disable=not progress)]
    pca = dict(zip(("train", "test"), pca_reconstruct(mnist["train"][0], mnist["test"][0], PCA_COMPONENTS)))
    train, test = (AVMNISTSplit(mnist[s][1], mnist[s][0], pca[s], clip_index[s]) for s in ("train", "test"))
    stamp = {"builder": "prepare_avmnist", "version": 1, "pca_components": PCA_COMPONENTS}
    return build_atomically(out, lambda folder: write_avmnist(folder, train, test, clips, progress), stamp)


def main(argv: list[str] | None = None) -> int:
    """Command line entry; returns the exit code (2 on bad input)."""
    parser = argparse.ArgumentParser(prog="prepare_avmnist", description=__doc__.split("\n")[0])
    parser.add_argument("--mnist_dir", type=Path, required=True, help="folder with the MNIST idx files")
    parser.add_argument("--fsdd_dir", type=Path, required=True, help="Free Spoken Digit Dataset (or its recordings/)")
    parser.add_argument("--out", type=Path, required=True, help="new folder to write the AVMNIST layout into")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        out = prepare_avmnist(args.mnist_dir, args.fsdd_dir, args.out, progress=not args.no_progress)
    except InputError as error:
        print(f"prepare_avmnist: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prepare_avmnist: interrupted; nothing was written", file=sys.stderr)
        return 130
    print(f"AVMNIST written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
