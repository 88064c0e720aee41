import tarfile

import numpy as np
import pytest
import torch

from datasets.avmnist import (
    AvmnistSplits,
    ImageTeacherInputs,
    collate_arrays,
    load_avmnist,
    wav_paths,
)
from datasets.collate import WaveformFiles
from datasets.tools.synthetic import write_synthetic_avmnist
from utils.experiment import InputError


def test_original_layout_loads_with_checked_shapes(avmnist):
    data = load_avmnist(avmnist)
    assert data.layout == "original" and data.n_train == 90 and data.n_test == 40
    assert data.images["train"].shape == (90, 1, 28, 28) and data.images["train"].dtype == torch.float32
    assert 0.0 <= float(data.images["train"].min()) and float(data.images["train"].max()) <= 1.0
    assert data.spectrograms["test"].shape == (40, 1, 112, 112)
    assert set(data.labels["train"].tolist()) == set(range(10))


def test_raw_images_are_normalised_to_minus_one_one(avmnist):
    images = load_avmnist(avmnist, pca=False).images["train"]
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0 and float(images.min()) < 0


def test_multibench_layout_loads(tmp_path):
    root = write_synthetic_avmnist(tmp_path / "mb", n_train=20, n_test=10, layout="multibench")
    data = load_avmnist(root)
    assert data.layout == "multibench" and data.spectrograms["train"].shape == (20, 1, 112, 112)


def test_split_is_seeded_90_10_and_disjoint(avmnist):
    data = load_avmnist(avmnist)
    splits = AvmnistSplits(data, data.spectrograms)
    a, b, c = (splits.draw(np.random.default_rng(seed)) for seed in (1, 1, 2))
    assert a == b and a != c
    assert len(a["train"]) == 81 and len(a["val"]) == 9 and a["test"] == list(range(40))
    assert sorted(a["train"] + a["val"]) == list(range(90))


def test_splits_give_keys_and_batches(avmnist):
    data = load_avmnist(avmnist)
    source = AvmnistSplits(data, data.spectrograms)
    splits = source.build(source.draw(np.random.default_rng(0)))
    assert list(splits["test"].teacher_keys[:3]) == [90, 91, 92]  # test keys follow the train items
    batch = collate_arrays([splits["train"].dataset[i] for i in range(4)])
    assert batch.inputs["x"].shape == (4, 1, 112, 112) and batch.inputs["x"].max() <= 1.0
    assert batch.positions.tolist() == [0, 1, 2, 3]
    images = ImageTeacherInputs(data, pca=True)
    assert torch.equal(images[90], data.images["test"][0])


def test_bad_split_records_are_rejected(avmnist):
    data = load_avmnist(avmnist)
    splits = AvmnistSplits(data, data.images)
    with pytest.raises(InputError, match="item 1 of the train array appears 2 times in 'train' and 'val'"):
        splits.build({"train": [0, 1], "val": [1], "test": [0]})
    with pytest.raises(InputError, match="0..39"):
        splits.build({"train": [0, 1], "val": [2], "test": [45]})
    with pytest.raises(InputError, match="item 3 of the test array appears 12 times in 'test'"):
        splits.build({"train": [0, 1], "val": [2], "test": [3] * 12})


def test_wavs_are_matched_by_number_and_resampled(avmnist):
    data = load_avmnist(avmnist)
    paths = wav_paths(data)
    assert paths[0].name == "audio_mnist_1.wav" and paths[90].name == "audio_mnist_91.wav"
    wave = WaveformFiles(paths)[0]
    assert wave.dtype == np.float32
    # the tone of train item 0 sits at 300 + 150 * label Hz, in the 16 kHz resampled signal
    spectrum = np.abs(np.fft.rfft(wave))
    peak = np.argmax(spectrum) * 16_000 / len(wave)
    assert abs(peak - (300 + 150 * data.labels["train"][0])) < 20


def test_audio_archive_is_extracted_once(fresh_avmnist):
    with tarfile.open(fresh_avmnist / "avmnist_audio_raw.tar.gz", "w:gz") as tar:
        tar.add(fresh_avmnist / "audio", arcname="audio")
    for wav in (fresh_avmnist / "audio").iterdir():
        wav.unlink()
    (fresh_avmnist / "audio").rmdir()
    paths = wav_paths(load_avmnist(fresh_avmnist))
    assert paths[0].is_file() and len(paths) == 40


def test_float_spectrograms_are_scaled_as_multibench_scales_them(tmp_path):
    # MultiBench's get_dataloader divides the spectrograms by 255.0 whatever their dtype.
    root = write_synthetic_avmnist(tmp_path / "mb", n_train=20, n_test=10, layout="multibench")
    stored = np.load(root / "audio" / "train_data.npy")
    uint8 = load_avmnist(root).spectrograms["train"]
    uint8_batch = collate_arrays([(uint8[i], 0, i) for i in range(4)]).inputs["x"]
    assert uint8.dtype == torch.uint8 and torch.equal(uint8_batch, uint8[:4].float() / 255.0)  # as before
    for dtype in (np.float16, np.float32, np.float64):  # scaled in place, in their own dtype
        np.save(root / "audio" / "train_data.npy", stored.astype(dtype))
        spectrograms = load_avmnist(root).spectrograms["train"]
        expected = (stored.astype(dtype) / 255.0).astype(np.float32).reshape(spectrograms.shape)
        assert spectrograms.dtype == torch.float32 and torch.equal(spectrograms, torch.from_numpy(expected))
        batch = collate_arrays([(spectrograms[i], 0, i) for i in range(4)]).inputs["x"]
        assert torch.allclose(batch, uint8_batch, atol=1e-3 if dtype == np.float16 else 1e-7)  # float16: 11 bits
