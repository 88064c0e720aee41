import tarfile

import numpy as np
import pytest
import torch

from datasets.avmnist import (avmnist_splits, collate_arrays, draw_avmnist_split, load_avmnist, wav_paths,
                              ImageTeacherInputs)
from datasets.collate import WaveformFiles
from datasets.synthetic import write_synthetic_avmnist
from utils.errors import InputError


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    return write_synthetic_avmnist(tmp_path_factory.mktemp("avmnist"), n_train=40, n_test=20)


@pytest.fixture
def fresh(tmp_path):
    return write_synthetic_avmnist(tmp_path / "avmnist", n_train=30, n_test=10)


def test_original_layout_loads_with_checked_shapes(original):
    data = load_avmnist(original)
    assert data.layout == "original" and data.n_train == 40 and data.n_test == 20
    assert data.images["train"].shape == (40, 1, 28, 28) and data.images["train"].dtype == torch.float32
    assert 0.0 <= float(data.images["train"].min()) and float(data.images["train"].max()) <= 1.0
    assert data.spectrograms["test"].shape == (20, 1, 112, 112)
    assert set(data.labels["train"].tolist()) == set(range(10))


def test_raw_images_are_normalised_to_minus_one_one(original):
    images = load_avmnist(original, pca=False).images["train"]
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0 and float(images.min()) < 0


def test_multibench_layout_loads(tmp_path):
    root = write_synthetic_avmnist(tmp_path / "mb", n_train=20, n_test=10, layout="multibench")
    data = load_avmnist(root)
    assert data.layout == "multibench" and data.spectrograms["train"].shape == (20, 1, 112, 112)
    with pytest.raises(InputError, match="MultiBench layout, which only holds spectrograms"):
        wav_paths(data)
    with pytest.raises(InputError, match="--pca false needs the raw images"):
        load_avmnist(root, pca=False)


def test_split_is_seeded_90_10_and_disjoint(original):
    data = load_avmnist(original)
    a = draw_avmnist_split(data, np.random.default_rng(1))
    b = draw_avmnist_split(data, np.random.default_rng(1))
    c = draw_avmnist_split(data, np.random.default_rng(2))
    assert a == b and a != c
    assert len(a["train"]) == 36 and len(a["val"]) == 4 and a["test"] == list(range(20))
    assert sorted(a["train"] + a["val"]) == list(range(40))


def test_splits_give_keys_and_batches(original):
    data = load_avmnist(original)
    splits = avmnist_splits(data, draw_avmnist_split(data, np.random.default_rng(0)), data.spectrograms)
    assert list(splits["test"].teacher_keys[:3]) == [40, 41, 42]  # test keys follow the train items
    batch = collate_arrays([splits["train"].dataset[i] for i in range(4)])
    assert batch.inputs["x"].shape == (4, 1, 112, 112) and batch.inputs["x"].max() <= 1.0
    assert batch.positions.tolist() == [0, 1, 2, 3]
    images = ImageTeacherInputs(data, pca=True)
    assert torch.equal(images[40], data.images["test"][0])


def test_bad_split_records_are_rejected(original):
    data = load_avmnist(original)
    with pytest.raises(InputError, match="share items"):
        avmnist_splits(data, {"train": [0, 1], "val": [1], "test": [0]}, data.images)
    with pytest.raises(InputError, match="0..19"):
        avmnist_splits(data, {"train": [0, 1], "val": [2], "test": [25]}, data.images)


def test_wavs_are_matched_by_number_and_resampled(original):
    data = load_avmnist(original)
    paths = wav_paths(data)
    assert paths[0].name == "audio_mnist_1.wav" and paths[40].name == "audio_mnist_41.wav"
    wave = WaveformFiles(paths)[0]
    assert wave.dtype == np.float32
    # the tone of train item 0 sits at 300 + 150 * label Hz, in the 16 kHz resampled signal
    spectrum = np.abs(np.fft.rfft(wave))
    peak = np.argmax(spectrum) * 16_000 / len(wave)
    assert abs(peak - (300 + 150 * data.labels["train"][0])) < 20


def test_audio_archive_is_extracted_once(fresh):
    with tarfile.open(fresh / "avmnist_audio_raw.tar.gz", "w:gz") as tar:
        tar.add(fresh / "audio", arcname="audio")
    for wav in (fresh / "audio").iterdir():
        wav.unlink()
    (fresh / "audio").rmdir()
    paths = wav_paths(load_avmnist(fresh))
    assert paths[0].is_file() and len(paths) == 40


@pytest.mark.parametrize("breakage, message", [
    (lambda root: (root / "spectrogram" / "train_data.npy").unlink(), "missing AVMNIST file"),
    (lambda root: np.save(root / "train_labels.npy", np.arange(30) % 12), "expected 0..9"),
    (lambda root: np.save(root / "train_labels.npy", np.zeros(29, dtype=np.int64)), "expected equal lengths"),
    (lambda root: np.save(root / "spectrogram" / "test_data.npy", np.zeros((10, 64, 64), np.uint8)), "shape"),
    (lambda root: np.save(root / "image" / "train_data.npy", np.zeros((30, 28, 28), np.float32)), "dtype"),
    (lambda root: np.save(root / "train_labels.npy", np.array([{"a": 1}] * 30)), "cannot read"),
    (lambda root: (root / "test_labels.npy").write_bytes(b"garbage"), "cannot read"),
])
def test_broken_files_raise_one_clear_input_error(fresh, breakage, message):
    breakage(fresh)
    with pytest.raises(InputError, match=message):
        data = load_avmnist(fresh, pca=False)
        wav_paths(data)


def test_missing_wav_is_named(fresh):
    (fresh / "audio" / "audio_mnist_7.wav").unlink()
    with pytest.raises(InputError, match="audio_mnist_7.wav"):
        wav_paths(load_avmnist(fresh))


def test_not_an_avmnist_folder(tmp_path):
    with pytest.raises(InputError, match="not an AVMNIST folder"):
        load_avmnist(tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        load_avmnist(tmp_path / "nope")
