"""What the benchmarks share: their setting (the repository on the path, OpenMP threads that wait passively),
synthetic data in the real layouts at any size, the clock, and the lines and tables they print. Import it first."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file, the repository root is not on the path
# Spinning OpenMP threads make timings on a CPU shared with other jobs several times slower and noisy; the policy
# must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from datasets.iemocap import LABELS_6  # noqa: E402
from datasets.tools.avmnist_writer import wav_bytes  # noqa: E402

EXPERIMENTS = ("AVMNIST_V2A", "AVMNIST_A2V", "IEMOCAP_T2A", "IEMOCAP_A2T")
WORDS = "well I think you know honestly the a to of and it is was that what right now really never".split()


def write_avmnist(out: Path, n_train: int, n_test: int, spectrogram_dtype: str = "uint8") -> Path:
    """AVMNIST in the original layout: labels, PCA images, spectrograms (uint8 as the authors' archive holds them)
    and an 8 kHz WAV per item from 500 clips of about 0.45 s like the spoken digits; the label marked as
    `datasets.tools.synthetic` marks it (a bright block, a bright band), in a few vectorised operations."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.permutation(np.arange(n) % 10)
        images = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
        spectrograms = rng.integers(0, 70, (n, 112, 112), dtype=np.uint8)
        for label in range(10):
            row, col = divmod(label, 4)
            images[labels == label, 2 + 8 * row: 8 + 8 * row, 2 + 6 * col: 8 + 6 * col] = 230
            spectrograms[labels == label, 4 + 11 * label: 11 + 11 * label, :] = 220
        for folder, array in (("image_pca", images.reshape(n, 784).astype(np.float32)),
                              ("spectrogram", spectrograms.astype(spectrogram_dtype))):
            (out / folder).mkdir(parents=True, exist_ok=True)
            np.save(out / folder / f"{split}_data.npy", array)
        np.save(out / f"{split}_labels.npy", labels.astype(np.int64))
    (out / "audio").mkdir()
    _, pool = clips(500, 8_000, 0.45, 0.35)
    for k in range(1, n_train + n_test + 1):
        (out / "audio" / f"audio_mnist_{k}.wav").write_bytes(pool[k % len(pool)])
    return out


def clips(n: int, rate: int, mean_seconds: float, spread: float) -> tuple[np.ndarray, list[bytes]]:
    """`n` distinct PCM16 WAVs (a tone and noise) of log-normal durations averaging `mean_seconds`."""
    rng = np.random.default_rng(1)
    seconds = np.clip(rng.lognormal(np.log(mean_seconds) - spread ** 2 / 2, spread, n), 0.15, 30)
    return seconds, [wav_bytes(0.3 * np.sin(np.arange(int(s * rate)) * rng.uniform(0.1, 0.5))
                               + 0.02 * rng.standard_normal(int(s * rate)), rate) for s in seconds]


def write_iemocap(out: Path, n: int) -> Path:
    """`n` labelled utterances in the release's layout under `out`/IEMOCAP: five sessions, EmoEvaluation files,
    texts/<stem>.json; 16 kHz WAVs from 256 clips of log-normal durations averaging 4.1 s, transcripts of about
    2.5 words a second."""
    tree, rng = out / "IEMOCAP", np.random.default_rng(2)
    seconds, pool = clips(256, 16_000, 4.5, 0.6)
    labels = defaultdict(list)
    (tree / "texts").mkdir(parents=True)
    for i in range(n):
        session, dialog, clip = i % 5 + 1, f"Ses0{i % 5 + 1}F_impro{i // 500:02d}", i % len(pool)
        stem, wavs = f"{dialog}_F{i:04d}", tree / f"Session{i % 5 + 1}" / "sentences" / "wav" / dialog
        wavs.mkdir(parents=True, exist_ok=True)
        (wavs / f"{stem}.wav").write_bytes(pool[clip])
        labels[session, dialog].append(f"[0.0 - {seconds[clip]:.4f}]\t{stem}\t{LABELS_6[i % 6]}\t[2, 2, 2]\n")
        words = rng.choice(WORDS, max(1, round(2.5 * seconds[clip] * rng.uniform(0.6, 1.4))))
        (tree / "texts" / f"{stem}.json").write_text(json.dumps({"Utterance": " ".join(words)}))
    for (session, dialog), lines in labels.items():
        (tree / f"Session{session}" / "dialog" / "EmoEvaluation").mkdir(parents=True, exist_ok=True)
        (tree / f"Session{session}" / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("".join(lines))
    return out


def data_options(name: str, avmnist: Path, iemocap: Path) -> list[str]:
    """Experiment `name`'s options for the data written here, with a random teacher (and IEMOCAP student)."""
    if name.startswith("AVMNIST"):
        return ["--data_root", str(avmnist), "--teacher_path", "random"]
    return ["--audio_dir", str(iemocap), "--text_dir", str(iemocap / "IEMOCAP" / "texts"), "--teacher_path", "random",
            "--student_path", "random"]


def clock(device: torch.device) -> Callable[[], float]:
    """perf_counter once the device has done what was queued."""
    def now() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()
    return now


def machine() -> str:
    """The CPU, its cores and the load average: a timing on a shared machine means little without them."""
    info = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    vectors = "AVX-512" if "avx512f" in info else "AVX2" if "avx2" in info else "no AVX2"
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    gpu = f"; {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{model}, {vectors}, {os.cpu_count()} cores, load average {load}{gpu}; torch {torch.__version__}, "
            f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns aligned: the first to the left, the others to the right."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = [header, ["-" * width for width in widths], *rows]
    return "\n".join("  ".join(str(cell).rjust(width) if i else str(cell).ljust(width)
                               for i, (cell, width) in enumerate(zip(line, widths))).rstrip() for line in lines)
