"""Write the original AVMNIST layout (shared by the demo builder and `prepare_avmnist`), atomically.

Layout of a folder D:
  train_labels.npy, test_labels.npy            int64 (N,), 0..9
  image/{train,test}_data.npy                  uint8 (N, 28, 28)
  image_pca/{train,test}_data.npy              float32 (N, 784), 0..255
  spectrogram/{train,test}_data.npy            uint8 (N, 112, 112), see datasets.tools.spectrogram
  audio/audio_mnist_{k}.wav                    8 kHz mono PCM16; k = i+1 (train item i), N_train+1+i (test item i)
  BUILD_COMPLETE                               marker written last (JSON of the build's parameters)

Items share a pool of spoken clips (many items, few recordings): each clip's spectrogram and WAV
encoding are computed once.
"""

import io
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
from threadpoolctl import threadpool_limits  # installed with scikit-learn
from tqdm import tqdm

from datasets.tools.spectrogram import log_power_spectrogram
from utils.run_folder import writer, writer_alive

AUDIO_RATE = 8000
MARKER = "BUILD_COMPLETE"


@dataclass(frozen=True)
class AVMNISTSplit:
    """One split: labels int64 (N,), images uint8 (N, 28, 28), images_pca float32 (N, 784),
    clip_index (N,) = the item's spoken digit as an index into the shared clip pool."""

    labels: np.ndarray
    images: np.ndarray
    images_pca: np.ndarray
    clip_index: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.labels)
        shapes = (self.images.shape, self.images_pca.shape, self.clip_index.shape)
        if shapes != ((n, 28, 28), (n, 784), (n,)):
            raise ValueError(
                f"AVMNISTSplit: expected {n} labels, images (N, 28, 28), images_pca (N, 784) and clip_index (N,); got "
                f"{shapes}"
            )


def cycle_pools(labels: np.ndarray, pools: Mapping[int, Sequence[int]]) -> np.ndarray:
    """Give the j-th item of each label the element (j mod n) of that label's pool (n elements).

    This is how recordings (or speakers) are spread over many more items, in a fixed order.
    A label without a pool is a ValueError (callers check their pools first, to say what is missing).
    """
    assigned = np.empty(len(labels), np.int64)
    for label in np.unique(labels):
        pool = np.asarray(pools.get(int(label), ()), np.int64)
        if pool.size == 0:
            raise ValueError(f"no clips for label {label}")
        items = np.flatnonzero(labels == label)
        assigned[items] = pool[np.arange(items.size) % pool.size]
    return assigned


def pca_reconstruct(train: np.ndarray, test: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Project images on the first k principal components of `train` and back: float32 (N, 784), 0..255.

    Eigen-decomposition of the 784×784 covariance: deterministic,
    and the reconstruction does not depend on the eigenvectors' signs.
    """
    # One BLAS thread: on busy cores multi-threaded OpenBLAS spin-waits, several times slower.
    with threadpool_limits(limits=1, user_api="blas"):
        flat_train = train.reshape(len(train), -1).astype(np.float64)
        mean = flat_train.mean(axis=0)
        centred = flat_train - mean
        _, vectors = np.linalg.eigh(centred.T @ centred)
        basis = vectors[:, ::-1][:, :k]  # eigh sorts eigenvalues in ascending order

        def reconstruct(images: np.ndarray) -> np.ndarray:
            offset = images.reshape(len(images), mean.size).astype(np.float64) - mean
            return np.clip(offset @ basis @ basis.T + mean, 0.0, 255.0).astype(np.float32)

        return reconstruct(train), reconstruct(test)


def pcm16(wave: np.ndarray) -> np.ndarray:
    """A float waveform as int16 samples, scaled by 32768 as soundfile reads them back.

    (libsndfile writes floats scaled by 32767, so a PCM16 file read as float and written again
    would lose a little each time; this makes the round trip exact.)
    """
    return np.clip(np.rint(np.asarray(wave, np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def wav_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    """A float waveform as the bytes of a mono PCM16 WAV file."""
    buffer = io.BytesIO()
    soundfile.write(buffer, pcm16(wave), sample_rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def write_avmnist(
    folder: Path, train: AVMNISTSplit, test: AVMNISTSplit, clips: Sequence[np.ndarray], progress: bool = False
) -> None:
    """Write the layout into an existing, empty `folder`; `clips` are 8 kHz float waveforms."""
    # Spectrograms from the samples the WAV files hold, so either can be derived from the other.
    stored = [pcm16(clip) for clip in clips]
    spectrograms = np.stack([
        log_power_spectrogram(samples / 32768.0, AUDIO_RATE)
        for samples in tqdm(stored, "spectrograms", disable=not progress)
    ])
    encoded = [wav_bytes(samples / 32768.0, AUDIO_RATE) for samples in stored]
    for name, split in (("train", train), ("test", test)):
        np.save(folder / f"{name}_labels.npy", split.labels.astype(np.int64))
        arrays = {
            "image": split.images.astype(np.uint8),
            "image_pca": split.images_pca.astype(np.float32),
            "spectrogram": spectrograms[split.clip_index],
        }
        for sub, array in arrays.items():
            (folder / sub).mkdir(exist_ok=True)
            np.save(folder / sub / f"{name}_data.npy", array)
    audio = folder / "audio"
    audio.mkdir()
    item_clips = np.concatenate([train.clip_index, test.clip_index])
    for k, clip in enumerate(tqdm(item_clips, "wav files", disable=not progress), start=1):
        (audio / f"audio_mnist_{k}.wav").write_bytes(encoded[clip])


def is_complete(folder: Path, stamp: Mapping[str, object]) -> bool:
    """Whether `folder` holds a finished build made with the parameters `stamp`."""
    try:
        return json.loads((folder / MARKER).read_text()) == dict(stamp)
    except (OSError, ValueError):
        return False


def build_atomically(out: Path, write: Callable[[Path], None], stamp: Mapping[str, object]) -> Path:
    """Run `write(folder)` on a sibling temporary folder, add the marker, then rename it to `out`.

    So `out` either does not exist or is complete. An interrupted build leaves no `out`; a killed
    one leaves `.<name>.partial-<host>.<pid>`, removed by the next build on that host once that process is gone. If
    another process finishes the same build first, its result is kept.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    for partial in out.parent.glob(f".{out.name}.partial-*"):
        if not writer_alive(partial.name.rsplit(".partial-", 1)[1]):
            shutil.rmtree(partial, ignore_errors=True)
    temporary = out.parent / f".{out.name}.partial-{writer()}"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        temporary.mkdir()
        write(temporary)
        (temporary / MARKER).write_text(json.dumps(dict(stamp), sort_keys=True))
        try:
            temporary.rename(out)
        except OSError:
            if not is_complete(out, stamp):
                raise
            shutil.rmtree(temporary)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return out
