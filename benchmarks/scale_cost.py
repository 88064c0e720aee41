"""What a run of the real size costs up to its first training step, and an epoch of it, for each experiment.

    HF_HUB_OFFLINE=1 python benchmarks/scale_cost.py --data /tmp/scale_data     # writes the data there once (3 GB)
    HF_HUB_OFFLINE=1 python benchmarks/scale_cost.py --data /tmp/scale_data --only AVMNIST_V2A teacher
    HF_HUB_OFFLINE=1 python benchmarks/scale_cost.py --data /tmp/scale_data --device cuda

Each experiment runs in a process of its own, built as its script builds a trial, with random teachers and
students of the real architectures and a fresh --cache_dir: the phases up to the first training step are timed,
then a slice of training steps and of validation batches, from which an epoch is extrapolated; then a new cache
object reads the cache's file back, as a later run would. A teacher too slow here computes its first SAMPLE inputs
and zeros after them (every input is still read): its cache is extrapolated per hour of audio or per text.
`teacher`: side by side, V->A's one-epoch run on the small AVMNIST without the teacher and with it, and the cache
build against the teacher's batched forward (blocks of 256 images read beforehand) of the same images.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from itertools import islice
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file, the root is not on the path
# Spinning OpenMP threads make timings on a shared CPU several times slower; set before torch loads its runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from datasets.iemocap import LABELS_6  # noqa: E402
from datasets.tools.avmnist_writer import wav_bytes  # noqa: E402

EXPERIMENTS = ("AVMNIST_V2A", "AVMNIST_A2V", "IEMOCAP_T2A", "IEMOCAP_A2T")
SIZES = {"avmnist": (60_000, 10_000), "iemocap": 7_380, "small": (6_000, 2_000)}  # small: not scaled by --fraction
SAMPLE = {"AVMNIST_V2A": None, "AVMNIST_A2V": 64, "IEMOCAP_T2A": 192, "IEMOCAP_A2T": 16}  # None: the whole cache
WORDS = "well I think you know honestly the a to of and it is was that what right now really never".split()


def write_avmnist_arrays(out: Path, n_train: int, n_test: int, spectrogram_dtype: str = "uint8") -> Path:
    """AVMNIST's arrays in the original layout (PCA images and spectrograms; no raw images or WAVs), the label
    marked as `datasets.tools.synthetic` marks it (a bright block, a bright band), in a few vectorised operations."""
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
    return out


def clips(n: int, rate: int, mean_seconds: float, spread: float) -> tuple[np.ndarray, list[bytes]]:
    """`n` distinct PCM16 WAVs (a tone and noise) of log-normal durations averaging `mean_seconds`."""
    rng = np.random.default_rng(1)
    seconds = np.clip(rng.lognormal(np.log(mean_seconds) - spread ** 2 / 2, spread, n), 0.15, 30)
    return seconds, [wav_bytes(0.3 * np.sin(np.arange(int(s * rate)) * rng.uniform(0.1, 0.5))
                               + 0.02 * rng.standard_normal(int(s * rate)), rate) for s in seconds]


def write_iemocap(tree: Path, n: int) -> None:
    """`n` labelled utterances in the release's layout: five sessions, EmoEvaluation files, texts/<stem>.json."""
    rng = np.random.default_rng(2)
    seconds, pool = clips(256, 16_000, 4.5, 0.6)
    labels = defaultdict(list)
    (tree / "texts").mkdir(parents=True)
    for i in range(n):
        session, dialog, clip = i % 5 + 1, f"Ses0{i % 5 + 1}F_impro{i // 500:02d}", i % len(pool)
        stem, wavs = f"{dialog}_F{i:04d}", tree / f"Session{i % 5 + 1}" / "sentences" / "wav" / dialog
        wavs.mkdir(parents=True, exist_ok=True)
        (wavs / f"{stem}.wav").write_bytes(pool[clip])
        labels[session, dialog].append(f"[0.0 - {seconds[clip]:.4f}]\t{stem}\t{LABELS_6[i % 6]}\t[2, 2, 2]\n")
        words = rng.choice(WORDS, max(1, round(2.5 * seconds[clip] * rng.uniform(0.6, 1.4))))  # 2.5 words a second
        (tree / "texts" / f"{stem}.json").write_text(json.dumps({"Utterance": " ".join(words)}))
    for (session, dialog), lines in labels.items():
        (tree / f"Session{session}" / "dialog" / "EmoEvaluation").mkdir(parents=True, exist_ok=True)
        (tree / f"Session{session}" / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("".join(lines))


def write_data(folder: Path, fraction: float, spectrogram_dtype: str) -> str:
    """The data sets in `folder`, written once (a marker records what); what was done, in words."""
    n_train, n_test = (round(fraction * n) for n in SIZES["avmnist"])
    plan = {"avmnist": [n_train, n_test], "iemocap": round(fraction * SIZES["iemocap"]),
            "spectrograms": spectrogram_dtype}
    marker = folder / "SCALE_COST_DATA"
    if marker.is_file() and json.loads(marker.read_text()) == plan:
        return f"data in {folder}, written before"
    if folder.exists() and any(folder.iterdir()):
        sys.exit(f"scale_cost.py: error: {folder} holds other files or other data; expected an empty or new folder")
    start = time.perf_counter()
    write_avmnist_arrays(folder / "avmnist", n_train, n_test, spectrogram_dtype)
    (folder / "avmnist" / "audio").mkdir()
    _, pool = clips(500, 8_000, 0.45, 0.35)  # the spoken digits: about 0.45 s
    for k in range(1, n_train + n_test + 1):
        (folder / "avmnist" / "audio" / f"audio_mnist_{k}.wav").write_bytes(pool[k % len(pool)])
    write_avmnist_arrays(folder / "avmnist_small", *SIZES["small"], spectrogram_dtype)
    write_iemocap(folder / "iemocap" / "IEMOCAP", plan["iemocap"])
    marker.write_text(json.dumps(plan))
    return f"data written to {folder} in {time.perf_counter() - start:.0f} s"


def options_of(name: str, folder: Path, avmnist: str = "avmnist") -> list[str]:
    """An experiment's data options here, with random models."""
    if name.startswith("AVMNIST"):
        return ["--data_root", str(folder / avmnist), "--teacher_path", "random"]
    return ["--audio_dir", str(folder / "iemocap"), "--text_dir", str(folder / "iemocap" / "IEMOCAP" / "texts"),
            "--teacher_path", "random", "--student_path", "random"]


def clock(device) -> Callable[[], float]:
    """perf_counter once the device has done what was queued."""
    import torch

    def now() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()
    return now


def cpu_seconds() -> float:
    """CPU seconds of this process (all its threads) and of its finished children: on a shared CPU a steadier
    measure of work than wall time."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Sampled:
    """A teacher's `encode` that computes its first `count` inputs (timed) and zeros after them, counting the units
    of both: seconds of 16 kHz audio for waveforms, else inputs."""

    def __init__(self, teacher, count: int, now: Callable[[], float]) -> None:
        self.teacher, self.encode, self.count, self.now = teacher, teacher.encode, count, now
        self.seconds, self.done, self.units, self.skipped = 0.0, 0, 0.0, 0.0

    def __call__(self, inputs: list):
        import torch
        units = sum(len(x) / 16_000 for x in inputs) if isinstance(inputs[0], np.ndarray) else len(inputs)
        if self.done >= self.count:
            self.skipped += units
            return torch.zeros(len(inputs), self.teacher.dim, device=self.teacher.device)
        start = self.now()
        features = self.encode(inputs)
        self.seconds += self.now() - start
        self.done, self.units = self.done + len(inputs), self.units + units
        return features


def measure(name: str, folder: Path, device: str, steps: int, work: Path) -> dict:
    """One experiment up to its first training step, a slice of its epoch, its cache read back (in this process)."""
    started = time.perf_counter()
    script = importlib.import_module(name)  # torch and the models' libraries: a run's first cost
    import torch
    from utils.loop import run_epoch
    from utils.teacher_features import TeacherFeatureCache
    from utils.trial import Trials

    phases = {"imports": time.perf_counter() - started}
    args = script.parse_args([*options_of(name, folder), "--device", device, "--no_progress", "--output_dir",
                              str(work / "runs"), "--cache_dir", str(work / "cache")])
    experiment = script.build_experiment(args)  # loads and checks the data, builds the teacher
    phases["data"] = time.perf_counter() - started - phases["imports"]
    trials = Trials(experiment, args)  # the teacher to the device; the disk cache's key hashes weights and data
    now = clock(trials.device)
    phases["hash"] = now() - started - sum(phases.values())
    sampled = SAMPLE[name] and Sampled(experiment.teacher, SAMPLE[name], now)
    if sampled:
        experiment.teacher.encode = sampled
    trial = trials.build(args.random_seed, trials.split_record(args.random_seed))
    features = trials.features
    phases["split"] = now() - started - sum(phases.values()) - features.build_seconds
    phases["cache"] = features.build_seconds + (sampled.seconds / sampled.units * sampled.skipped if sampled else 0)

    def timed_slice(split: str, batches: int) -> float:
        loader, trial.loaders[split] = trial.loaders[split], islice(trial.loaders[split], batches)
        start = now()
        run_epoch(trial, split, "a timed slice")
        trial.loaders[split] = loader
        return now() - start

    phases["first step"] = timed_slice("train", 1)
    step, evaluation = timed_slice("train", steps) / steps, timed_slice("val", steps) / steps
    evaluations = len(trial.loaders["val"]) + len(trial.loaders.get("precise_bn", []))
    result = {"phases": phases, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
              "peak GPU": torch.cuda.max_memory_allocated() if trials.device.type == "cuda" else None,
              "items": [len(trial.splits[split].dataset) for split in ("train", "val", "test")],
              "file": features.path.stat().st_size,
              "epoch": len(trial.loaders["train"]) * step + evaluations * evaluation}
    if sampled:  # per unit: the teacher's forward (of the inputs computed) and the reading (of every input)
        result |= {"units": sampled.units + sampled.skipped, "forward": sampled.seconds / sampled.units,
                   "read": (features.build_seconds - sampled.seconds) / (sampled.units + sampled.skipped)}
    start = time.perf_counter()
    TeacherFeatureCache(experiment.teacher, experiment.teacher_inputs, trials.device, trials.amp_dtype, args.cache_dir,
                        progress=False)
    return result | {"load": time.perf_counter() - start}


def teacher_part(folder: Path, device: str, rounds: int) -> dict:
    """Side by side, in rounds of alternating order: the V->A script's one-epoch run on the small AVMNIST without
    (lam 0) and with the teacher (lam 0.3), each a process of its own; and the teacher's cache build against its
    batched forward of the same images (each measured twice a round, the first a warm-up). Seconds of CPU time on
    the CPU, of wall time on CUDA."""
    import AVMNIST_V2A
    import torch
    from utils.teacher_features import TeacherFeatureCache
    from utils.trial import Trials

    argv = [*options_of("AVMNIST_V2A", folder, "avmnist_small"), "--device", device, "--no_progress"]
    experiment = AVMNIST_V2A.build_experiment(args := AVMNIST_V2A.parse_args(argv))
    teacher, inputs, keys = experiment.teacher, experiment.teacher_inputs, np.arange(4096)
    where = Trials(experiment, args).device  # the teacher on it
    ready = [[inputs[k] for k in keys[first:first + 256]] for first in range(0, len(keys), 256)]

    def forward() -> None:
        with torch.inference_mode():
            for batch in ready:
                teacher.encode(batch)

    def run(lam: str) -> None:
        subprocess.run([sys.executable, "AVMNIST_V2A.py", *argv, "--epochs", "1", "--n_times", "1", "--lam", lam,
                        "--output_dir", runs], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)

    works = {"lam 0": lambda: run("0"), "lam 0.3": lambda: run("0.3"), "forward": forward,
             "cache": lambda: TeacherFeatureCache(teacher, inputs, where, progress=False).prepare(keys)}
    seconds, now = defaultdict(list), cpu_seconds if where.type == "cpu" else clock(where)
    with tempfile.TemporaryDirectory(prefix="scale_cost_") as runs:
        for k in range(rounds):
            for order in (("lam 0", "lam 0.3"), ("forward", "cache", "forward", "cache")):
                for which in (order if k % 2 == 0 else order[::-1]):
                    start = now()
                    works[which]()
                    seconds[which].append(now() - start)
    seconds |= {which: seconds[which][1::2] for which in ("forward", "cache")}
    return {**{which: statistics.median(values) for which, values in seconds.items()}, "keys": len(keys),
            "run ratio": statistics.median(b / a for a, b in zip(seconds["lam 0"], seconds["lam 0.3"])),
            "speed ratio": statistics.median(f / c for f, c in zip(seconds["forward"], seconds["cache"]))}


def report(costs: dict[str, dict], teacher: dict | None) -> None:
    from teacher_cost import table  # (this folder's own benchmark)

    phases = ["imports", "data", "hash", "split", "cache", "first step"]
    print(table(["experiment", "train/val/test", *phases, "to step 1", "peak RSS", "peak GPU", "cache file",
                 "read back", "epoch"],
                [[name, "/".join(map(str, c["items"])), *(f"{c['phases'][p]:.1f}" for p in phases),
                  f"{sum(c['phases'].values()):.0f}", *(f"{c[p] / 2**30:.2f} GiB" if c[p] else "-" for p in (
                      "peak", "peak GPU")), f"{c['file'] / 2**20:.0f} MiB", f"{c['load']:.2f}",
                  f"{c['epoch'] / 60:.1f} min"] for name, c in costs.items()]))
    print("seconds to the first training step by phase, and in all; peak memory (resident; CUDA: allocated); the\n"
          "cache's file and a later run's reading it (s); an epoch (training, validation, precise BatchNorm)\n"
          "extrapolated from a slice")
    for name, c in costs.items():
        if "units" in c:
            per, unit = ("hour of audio", 3600) if name.endswith(("A2V", "A2T")) else ("1,000 texts", 1000)
            cached = f"{c['units'] / 3600:.2f} h of audio" if unit == 3600 else f"{c['units']:.0f} texts"
            print(f"{name}: the cache of {cached}, {c['phases']['cache'] / 60:.1f} min (extrapolated): the teacher's "
                  f"forward {unit * c['forward']:.0f} s and reading {unit * c['read']:.1f} s per {per}")
    if teacher:
        print("\n" + table(["V->A", "lam 0 s", "lam 0.3 s", "lam 0.3 / 0", "cache s", "forward s", "cache / forward"],
                           [[f"{SIZES['small'][0]:,} + {SIZES['small'][1]:,} items", *(f"{teacher[w]:.2f}" for w in (
                               "lam 0", "lam 0.3", "run ratio", "cache", "forward", "speed ratio"))]]))
        print(f"one epoch's run of the script, without and with the teacher; the cache build and the batched forward\n"
              f"of {teacher['keys']:,} images, and the ratio of their speeds (CPU seconds on the CPU, wall seconds on\n"
              "CUDA; medians over the rounds; ratios: the median of each round's own)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="where the data are written once (not the repo)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--only", nargs="+", choices=[*EXPERIMENTS, "teacher"], default=[*EXPERIMENTS, "teacher"])
    parser.add_argument("--fraction", type=float, default=1.0, help="of the real sizes (another --data folder)")
    parser.add_argument("--float_spectrograms", action="store_true", help="float32 ones (another --data folder)")
    parser.add_argument("--steps", type=int, default=8, help="training steps (and validation batches) timed")
    parser.add_argument("--rounds", type=int, default=2, help="of the teacher part")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:  # the last line of stdout is the result
        with tempfile.TemporaryDirectory(prefix="scale_cost_") as work:
            print(json.dumps(measure(options.child, options.data, options.device, options.steps, Path(work))))
        return 0
    started = time.perf_counter()
    print(write_data(options.data, options.fraction, "float32" if options.float_spectrograms else "uint8"),
          file=sys.stderr)
    costs = {}
    for name in [name for name in EXPERIMENTS if name in options.only]:
        print(f"[{time.perf_counter() - started:5.0f} s] {name}", file=sys.stderr, flush=True)
        child = subprocess.run([sys.executable, __file__, "--child", name, "--data", str(options.data), "--device",
                                options.device, "--steps", str(options.steps)], stdout=subprocess.PIPE, text=True,
                               check=True)
        costs[name] = json.loads(child.stdout.splitlines()[-1])
    teacher = teacher_part(options.data, options.device, options.rounds) if "teacher" in options.only else None
    print(f"\n== scale cost: device {options.device}, {os.cpu_count()} CPUs, OMP_WAIT_POLICY="
          f"{os.environ['OMP_WAIT_POLICY']}, data {options.fraction:g} x the real sizes ==")
    report(costs, teacher)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
