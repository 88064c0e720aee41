"""prepare_avmnist on tiny synthetic MNIST idx files and FSDD recordings."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import soundfile

from datasets.tools.avmnist_writer import MARKER
from datasets.tools.prepare_avmnist import main
from datasets.tools.spectrogram import log_power_spectrogram

N_TRAIN, N_TEST = 30, 10
SPEAKERS = ("jackson", "nicolas")
INDICES = (0, 1, 2, 3, 40, 41, 49)  # 40-49 speak for the test items


def tone_frequency(digit: int) -> int:
    return 300 + 150 * digit


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


@pytest.fixture
def sources(tmp_path: Path) -> dict:
    """MNIST idx files (train images gzipped) and FSDD recordings that encode digit, speaker and index:
    a tone of the digit's frequency, the speaker's amplitude, 800 + 40·index samples."""
    rng = np.random.default_rng(0)
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    arrays = {}
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        suffix = ".gz" if prefix == "train" else ""
        write_idx(mnist / f"{prefix}-images-idx3-ubyte{suffix}", images, 0x803)
        write_idx(mnist / f"{prefix}-labels-idx1-ubyte", labels, 0x801)
        arrays[prefix] = (images, labels)
    recordings = tmp_path / "fsdd" / "recordings"
    recordings.mkdir(parents=True)
    for digit in range(10):
        for amplitude, speaker in zip((0.2, 0.4), SPEAKERS):
            for index in INDICES:
                time = np.arange(800 + 40 * index) / 8000
                wave = amplitude * np.sin(2 * np.pi * tone_frequency(digit) * time)
                soundfile.write(recordings / f"{digit}_{speaker}_{index}.wav", wave, 8000, subtype="PCM_16")
    return {"mnist": mnist, "fsdd": tmp_path / "fsdd", "out": tmp_path / "avmnist", "arrays": arrays}


def run(sources: dict, **changes: Path) -> int:
    paths = {key: sources[key] for key in ("mnist", "fsdd", "out")} | changes
    return main([f"--mnist_dir={paths['mnist']}", f"--fsdd_dir={paths['fsdd']}", f"--out={paths['out']}", "--no_progress"])


def expected_recording(split: str, labels: np.ndarray, item: int) -> str:
    """The i-th item of digit d gets the split's (i mod n_d)-th recording of d, by speaker then index."""
    digit = int(labels[item])
    pool = [
        f"{digit}_{speaker}_{index}.wav"
        for speaker in SPEAKERS
        for index in INDICES
        if (index >= 40) == (split == "test")
    ]
    rank = int(np.sum(labels[:item] == digit))
    return pool[rank % len(pool)]


def test_builds_the_avmnist_layout_with_the_right_recordings(sources: dict) -> None:
    assert run(sources) == 0
    out = sources["out"]
    assert (out / MARKER).is_file()
    wav_files = {p.name for p in (out / "audio").iterdir()}
    assert wav_files == {f"audio_mnist_{k}.wav" for k in range(1, N_TRAIN + N_TEST + 1)}
    for split, prefix, first_k in (("train", "train", 1), ("test", "t10k", N_TRAIN + 1)):
        images, labels = sources["arrays"][prefix]
        stored_labels = np.load(out / f"{split}_labels.npy", allow_pickle=False)
        assert stored_labels.dtype == np.int64 and np.array_equal(stored_labels, labels)
        image = np.load(out / "image" / f"{split}_data.npy", allow_pickle=False)
        assert image.dtype == np.uint8 and np.array_equal(image, images)
        pca = np.load(out / "image_pca" / f"{split}_data.npy", allow_pickle=False)
        assert pca.shape == (len(labels), 784) and pca.dtype == np.float32 and 0 <= pca.min() and pca.max() <= 255
        if split == "train":  # 30 images span < 196 dimensions: the projection keeps them
            assert np.abs(pca - images.reshape(-1, 784)).max() < 1e-2
        spectrograms = np.load(out / "spectrogram" / f"{split}_data.npy", allow_pickle=False)
        assert spectrograms.shape == (len(labels), 112, 112) and spectrograms.dtype == np.uint8
        for item, label in enumerate(labels):
            path = out / "audio" / f"audio_mnist_{first_k + item}.wav"
            samples, rate = soundfile.read(path, dtype="int16")
            assert rate == 8000
            source = sources["fsdd"] / "recordings" / expected_recording(split, labels, item)
            assert np.array_equal(samples, soundfile.read(source, dtype="int16")[0]), path.name  # an exact copy
            spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
            assert abs(np.argmax(spectrum) * 8000 / len(samples) - tone_frequency(int(label))) < 30  # the label's digit
            index = (len(samples) - 800) // 40
            assert (index >= 40) == (split == "test")
            assert np.array_equal(spectrograms[item], log_power_spectrogram(samples / 32768.0, 8000))


def test_same_inputs_give_identical_output(sources: dict, tmp_path: Path) -> None:
    assert run(sources) == 0 and run(sources, out=tmp_path / "again") == 0
    for first in sorted(p for p in sources["out"].rglob("*") if p.is_file()):
        assert first.read_bytes() == (tmp_path / "again" / first.relative_to(sources["out"])).read_bytes(), first


def expect_error(sources: dict, capsys: pytest.CaptureFixture, words: str, **changes: Path) -> None:
    assert run(sources, **changes) == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line.startswith("prepare_avmnist: error: ") and words in last_line, last_line
    if "out" not in changes:
        assert not sources["out"].exists()


def test_missing_folder_is_exit_2(sources: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    expect_error(sources, capsys, "not a folder", mnist=tmp_path / "nowhere")
    expect_error(sources, capsys, "not a folder", fsdd=tmp_path / "nowhere")


def test_corrupted_idx_magic_is_exit_2(sources: dict, capsys: pytest.CaptureFixture) -> None:
    labels = sources["mnist"] / "t10k-labels-idx1-ubyte"
    labels.write_bytes(b"\x00\x00\x08\x03" + labels.read_bytes()[4:])  # an images magic on a labels file
    expect_error(sources, capsys, "magic number 0x00000803, expected 0x00000801")


def test_truncated_or_missing_idx_is_exit_2(sources: dict, capsys: pytest.CaptureFixture) -> None:
    images = sources["mnist"] / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-5])
    expect_error(sources, capsys, "data bytes, expected 7840")
    images.unlink()
    expect_error(sources, capsys, "missing t10k-images-idx3-ubyte")


def test_digit_without_test_recordings_is_exit_2(sources: dict, capsys: pytest.CaptureFixture) -> None:
    for path in (sources["fsdd"] / "recordings").glob("3_*_4?.wav"):
        path.unlink()
    expect_error(sources, capsys, "no test recording of digit 3")


def test_unreadable_or_wrong_rate_recording_is_exit_2(sources: dict, capsys: pytest.CaptureFixture) -> None:
    recording = sources["fsdd"] / "recordings" / "5_nicolas_41.wav"
    recording.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    expect_error(sources, capsys, "5_nicolas_41.wav: unreadable WAV")
    soundfile.write(recording, np.zeros(1600), 16000, subtype="PCM_16")
    expect_error(sources, capsys, "16000 Hz, 1 channel(s); expected 8000 Hz mono")


def test_existing_output_is_never_overwritten(sources: dict, capsys: pytest.CaptureFixture) -> None:
    sources["out"].mkdir()
    (sources["out"] / "mine.txt").write_text("keep")
    expect_error(sources, capsys, "already exists", out=sources["out"])
    assert (sources["out"] / "mine.txt").read_text() == "keep"
