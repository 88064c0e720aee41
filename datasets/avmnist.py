"""AVMNIST: MNIST digit images paired with spoken digits, in the original or the MultiBench layout.

Original (`--data_root`): `{train,test}_labels.npy`; `image_pca/{train,test}_data.npy` (784 values,
0..255); `image/{train,test}_data.npy` (uint8 28x28); `spectrogram/{train,test}_data.npy` (uint8
112x112); `audio/audio_mnist_{k}.wav` (8 kHz; k = i+1 for train item i, N_train+1+i for test item i).
MultiBench: labels at the root, `image/*_data.npy` PCA images, `audio/*_data.npy` spectrograms.

Items are numbered by a *key*: train item i is key i, test item i is key N_train + i. The teacher
inputs of both scripts are looked up by that key.
"""

from __future__ import annotations

import os
import tarfile
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from utils.experiment import Batch, InputError, Split
from utils.fingerprints import fingerprint_of

NUM_CLASSES = 10
TRAIN_SHARE = 0.9
AUDIO_ARCHIVE = "avmnist_audio_raw.tar.gz"


@dataclass
class AvmnistData:
    """Arrays of both splits, loaded once. Images are float 1x28x28 ready for a model (/255, or the
    [-1, 1] raw image with `pca=False`); uint8 spectrograms stay uint8 (scaled per batch), float ones
    are scaled by 1/255 when loaded."""

    root: Path
    layout: str  # "original" or "multibench"
    labels: dict[str, np.ndarray]
    images: dict[str, torch.Tensor] | None
    spectrograms: dict[str, torch.Tensor] | None

    @property
    def n_train(self) -> int:
        return len(self.labels["train"])

    @property
    def n_test(self) -> int:
        return len(self.labels["test"])


def _layout(root: Path) -> str:
    if not root.is_dir():
        raise InputError(f"--data_root {root} is not a folder; expected the AVMNIST folder")
    if (root / "spectrogram").is_dir() or (root / "image_pca").is_dir():
        return "original"
    if (root / "audio" / "train_data.npy").is_file():
        return "multibench"
    raise InputError(f"{root} is not an AVMNIST folder: expected image_pca/ and spectrogram/ (original layout) "
                     "or image/ and audio/ *_data.npy (MultiBench layout) next to train_labels.npy")


def _load_array(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"missing AVMNIST file {path}")
    try:
        check_npy_size(path)
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:  # EOFError: an empty file
        reason = str(error) or "an empty file"
        if "pickle" in reason:  # numpy's message then advises loading pickles anyway, which could run code
            reason = "not an array of numbers; pickled Python objects are never loaded"
        raise InputError(f"cannot read {path} as a .npy array ({reason})") from None
    if not isinstance(array, np.ndarray):  # np.load opens a .npz archive instead
        array.close()
        raise InputError(f"{path} is a .npz archive; expected a .npy array")
    if array.ndim == 0:
        raise InputError(f"{path} holds a single value; expected an array with one row per item")
    return array


NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def check_npy_size(path: Path) -> None:
    """A .npy file holds every item its header promises: a truncated file, or a header that promises more than
    the file holds (terabytes, say), is refused before np.load allocates anything. Other files are left to
    np.load to name."""
    with open(path, "rb") as handle:
        if handle.read(len(np.lib.format.MAGIC_PREFIX)) != np.lib.format.MAGIC_PREFIX:
            return
        handle.seek(0)
        version = np.lib.format.read_magic(handle)
        if version not in NPY_HEADERS:
            raise ValueError(f".npy format version {version[0]}.{version[1]}; expected 1.0 or 2.0, as np.save "
                             "writes arrays of numbers")
        shape, _, dtype = NPY_HEADERS[version](handle)
        held = os.fstat(handle.fileno()).st_size - handle.tell()
    promised = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize  # float: no overflow on a wild header
    if held < promised and not dtype.hasobject:  # objects are pickled: np.load refuses them unread
        raise InputError(f"{path} holds {held} bytes of data, but its header promises an array of shape {shape} "
                         f"and dtype {dtype} ({promised} bytes); expected a complete .npy file")


def _check_items(array: np.ndarray, path: Path, n: int, item_shapes: tuple[tuple[int, ...], ...],
                 uint8_only: bool = False) -> np.ndarray:
    """Check the length, item shape and dtype of an array, and return it reshaped to N x first item shape."""
    if len(array) != n:
        raise InputError(f"{path} has {len(array)} items but the labels have {n}; expected equal lengths")
    if array.shape[1:] not in item_shapes:
        raise InputError(f"{path} has items of shape {array.shape[1:]}; expected one of {list(item_shapes)}")
    allowed = (np.uint8,) if uint8_only else (np.uint8, np.float16, np.float32, np.float64)
    if array.dtype.type not in allowed:
        raise InputError(f"{path} has dtype {array.dtype}; expected {' or '.join(t.__name__ for t in allowed)}")
    if array.dtype != np.uint8:
        bad = np.flatnonzero(~np.isfinite(array).all(axis=tuple(range(1, array.ndim))))
        if bad.size:
            raise InputError(f"{path} holds NaN or inf in {bad.size} item(s), the first item {bad[0]}; "
                             "expected finite values")
    return array.reshape((n, *item_shapes[0]))


def _scaled_spectrograms(array: np.ndarray, path: Path) -> np.ndarray:
    """Float spectrograms divided by 255 in their own dtype, then float32: MultiBench's loader divides the
    spectrograms by 255.0 whatever their dtype, so float ones hold 0..255 as uint8 ones do. Divided in place
    and not copied when already float32: AVMNIST's are 3.5 GB in float32, and each copy would add as much to the
    peak memory."""
    if array.size and (array.min() < 0 or array.max() > 255):
        raise InputError(f"{path} holds float spectrograms in {array.min():g}..{array.max():g}; expected values "
                         "in 0..255 (MultiBench's convention, scaled by 1/255 here) or a uint8 array")
    return np.divide(array, 255.0, out=array).astype(np.float32, copy=False)


def _load_labels(root: Path, split: str) -> np.ndarray:
    path = root / f"{split}_labels.npy"
    labels = _load_array(path)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise InputError(f"{path} has shape {labels.shape} and dtype {labels.dtype}; expected 1-D integer labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise InputError(f"{path} has labels in {labels.min()}..{labels.max()}; expected 0..{NUM_CLASSES - 1}")
    return labels.astype(np.int64)


def load_avmnist(data_root: str | Path, pca: bool = True, images: bool = True, spectrograms: bool = True
                 ) -> AvmnistData:
    """Load and check the arrays a script needs (`images` and/or `spectrograms`) of both splits."""
    root = Path(data_root)
    layout = _layout(root)
    labels = {split: _load_labels(root, split) for split in ("train", "test")}
    loaded_images = loaded_spectrograms = None
    if images:
        folder = {("original", True): "image_pca", ("original", False): "image", ("multibench", True): "image"}.get(
            (layout, pca))
        if folder is None:
            raise InputError(f"--pca false needs the raw images (image/ of the original layout); "
                             f"{root} has the MultiBench layout, whose images are PCA images")
        loaded_images = {}
        for split in ("train", "test"):
            path = root / folder / f"{split}_data.npy"
            array = _check_items(_load_array(path), path, len(labels[split]), ((1, 28, 28), (784,), (28, 28)),
                                 uint8_only=not pca)
            loaded_images[split] = _image_tensor(array, pca)
    if spectrograms:
        folder = "spectrogram" if layout == "original" else "audio"
        loaded_spectrograms = {}
        for split in ("train", "test"):
            path = root / folder / f"{split}_data.npy"
            array = _check_items(_load_array(path), path, len(labels[split]), ((1, 112, 112), (112, 112)))
            if array.dtype != np.uint8:  # uint8 ones stay uint8 until collate_arrays scales a batch
                array = _scaled_spectrograms(array, path)
            loaded_spectrograms[split] = torch.from_numpy(np.ascontiguousarray(array))
    return AvmnistData(root, layout, labels, loaded_images, loaded_spectrograms)


def _image_tensor(array: np.ndarray, pca: bool) -> torch.Tensor:
    """/255; the raw image (pca false) is also normalised with mean 0.5, std 0.5, as the original."""
    images = torch.from_numpy(array.astype(np.float32) / 255.0)
    return images if pca else (images - 0.5) / 0.5


def wav_paths(data: AvmnistData) -> list[Path]:
    """The WAV of every key (train items, then test items), extracting the audio archive once if needed."""
    if data.layout == "multibench":
        raise InputError(f"AVMNIST A->V needs the raw WAVs (audio/audio_mnist_{{k}}.wav of the original archive); "
                         f"{data.root} has the MultiBench layout, which only holds spectrograms")
    folder = _find_audio_folder(data.root)
    if folder is None and (data.root / AUDIO_ARCHIVE).is_file():
        _extract_audio(data.root)
        folder = _find_audio_folder(data.root)
    if folder is None:
        raise InputError(f"no audio/audio_mnist_1.wav under {data.root} (nor {AUDIO_ARCHIVE} to extract); "
                         "AVMNIST A->V needs the WAVs")
    total = data.n_train + data.n_test
    names = [f"audio_mnist_{k}.wav" for k in range(1, total + 1)]
    present = set(os.listdir(folder))
    missing = [name for name in names if name not in present]
    if missing:
        raise InputError(f"{len(missing)} of {total} WAVs are missing in {folder}, e.g. {missing[0]}; "
                         f"expected audio_mnist_1.wav .. audio_mnist_{total}.wav")
    return [folder / name for name in names]


def _find_audio_folder(root: Path) -> Path | None:
    if (root / "audio" / "audio_mnist_1.wav").is_file():
        return root / "audio"
    for depth in ("*", "*/*"):
        for candidate in sorted(root.glob(f"{depth}/audio_mnist_1.wav")):
            return candidate.parent
    return None


def _extract_audio(root: Path) -> None:
    archive = root / AUDIO_ARCHIVE
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
    except (tarfile.TarError, OSError) as error:
        raise InputError(f"cannot extract {archive}: {error}") from None


def check_avmnist_split(data: AvmnistData, record: dict[str, list]) -> dict[str, np.ndarray]:
    """The split as index arrays, after checking that it fits this data (it may come from --split_file): item
    numbers in range, and no item twice (train and val both index the train array, test the test array)."""
    sizes = {"train": data.n_train, "val": data.n_train, "test": data.n_test}
    for name, size in sizes.items():
        # Checked in Python: bools, floats, nested lists and ints beyond int64 must not reach numpy.
        wrong = [item for item in record[name] if type(item) is not int or not 0 <= item < size]
        if wrong:
            raise InputError(f"split {name!r} holds {wrong[0]!r}; expected item numbers in 0..{size - 1}")
        if not record[name]:
            raise InputError(f"split {name!r} is empty; expected at least one item")
    for array, names in (("train", ("train", "val")), ("test", ("test",))):
        counts = Counter(item for name in names for item in record[name])
        repeated = [item for item, count in counts.items() if count > 1]
        if repeated:
            raise InputError(f"item {repeated[0]} of the {array} array appears {counts[repeated[0]]} times in "
                             f"{' and '.join(map(repr, names))} ({len(repeated)} repeated items); "
                             "expected each item once, in one split")
    return {name: np.asarray(record[name], dtype=np.int64) for name in sizes}


def item_keys(data: AvmnistData, split: str, indices: np.ndarray) -> np.ndarray:
    """Teacher-input keys of array indices: test items come after all train items."""
    return indices + (data.n_train if split == "test" else 0)


class ArrayItems(Dataset):
    """Rows of one array picked by index: (input, label, position in the split)."""

    def __init__(self, array: torch.Tensor, labels: np.ndarray, indices: np.ndarray) -> None:
        self.array, self.labels, self.indices = array, labels, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int, int]:
        index = self.indices[position]
        return self.array[index], int(self.labels[index]), position


def collate_arrays(items: list[tuple[torch.Tensor, int, int]]) -> Batch:
    """Stack the inputs; uint8 arrays (spectrograms) are scaled to [0, 1] here, once per batch (float
    ones were scaled when loaded)."""
    inputs = torch.stack([item[0] for item in items])
    inputs = inputs.float() / 255.0 if inputs.dtype == torch.uint8 else inputs.float()
    return Batch({"x": inputs}, torch.tensor([item[1] for item in items]),
                 np.array([item[2] for item in items], dtype=np.int64))


class AvmnistSplits:
    """A trial's splits: 90 % of a permutation of the train array for training (int() of the share), the
    rest for validation, the test array for testing; the student reads `student_inputs` (images or
    spectrograms by array name). Records hold array indices."""

    def __init__(self, data: AvmnistData, student_inputs: dict[str, torch.Tensor]) -> None:
        self.data, self.student_inputs = data, student_inputs

    def draw(self, rng: np.random.Generator) -> dict[str, list[int]]:
        order = rng.permutation(self.data.n_train)
        n_train = int(TRAIN_SHARE * self.data.n_train)
        return {"train": order[:n_train].tolist(), "val": order[n_train:].tolist(),
                "test": list(range(self.data.n_test))}

    def build(self, record: dict[str, list]) -> dict[str, Split]:
        splits = {}
        for name, index in check_avmnist_split(self.data, record).items():
            array = "test" if name == "test" else "train"
            splits[name] = Split(ArrayItems(self.student_inputs[array], self.data.labels[array], index),
                                 item_keys(self.data, name, index))
        return splits


class ImageTeacherInputs:
    """V->A teacher inputs: the 1x28x28 image of each key."""

    def __init__(self, data: AvmnistData, pca: bool) -> None:
        self.images, self.pca = torch.cat([data.images["train"], data.images["test"]]), pca

    @cached_property
    def fingerprint(self) -> str:
        """The images' values, hashed on first use (only the disk cache needs it)."""
        return fingerprint_of(["images", self.pca, self.images.numpy()])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: int) -> torch.Tensor:
        return self.images[key]
