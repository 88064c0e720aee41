"""What a run of the real size costs up to its first training step, and an epoch of it, for each experiment.

    HF_HUB_OFFLINE=1 python benchmarks/scale_cost.py --data /tmp/scale_data     # writes the data there once (3 GB)
    HF_HUB_OFFLINE=1 python benchmarks/scale_cost.py --data /tmp/scale_data --only AVMNIST_V2A --device cuda
    HF_HUB_OFFLINE=1 python benchmarks/scale_cost.py --data /tmp/scale_small --fraction 0.02      # a quick look
    HF_HUB_OFFLINE=1 python benchmarks/scale_cost.py --data /tmp/scale_teacher --teacher   # V->A's teacher's cost

Each experiment runs in a process of its own, built as its script builds a trial, with random teachers and
students of the real architectures and a fresh --cache_dir: the phases up to the first training step are timed,
then a slice of training steps and of validation batches, from which an epoch is extrapolated; then a new cache
object reads the cache's file back, as a later run would. A teacher too slow here computes its first SAMPLE inputs
and zeros after them (every input is still read): its cache is extrapolated per hour of audio or per text.

`--teacher`: what V->A's teacher costs a run, side by side in rounds of alternating order on TEACHER_SIZES items:
the script's one-epoch run without the teacher (lam 0) and with it (lam 0.3), each a process of its own; and the
cache's build (its fixed blocks) against the teacher's batched forward of the same images read beforehand. CPU
seconds on the CPU (what the run itself spends, whatever else the machine does), wall seconds on CUDA.
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

from common import EXPERIMENTS, ROOT, clock, data_options, machine, table, write_avmnist, write_iemocap

import numpy as np  # noqa: E402  (after common: the repository on the path, the OpenMP policy set)

SIZES = {"avmnist": (60_000, 10_000), "iemocap": 7_380}
TEACHER_SIZES = (6_000, 2_000)  # --teacher: AVMNIST's train and test items
SAMPLE = {"AVMNIST_V2A": None, "AVMNIST_A2V": 64, "IEMOCAP_T2A": 192, "IEMOCAP_A2T": 16}  # None: the whole cache


def write_data(folder: Path, fraction: float) -> str:
    """The data sets in `folder`, written once (a marker records what); what was done, in words."""
    plan = {"avmnist": [round(fraction * n) for n in SIZES["avmnist"]], "iemocap": round(fraction * SIZES["iemocap"])}
    marker = folder / "SCALE_COST_DATA"
    if marker.is_file() and json.loads(marker.read_text()) == plan:
        return f"data in {folder}, written before"
    if folder.exists() and any(folder.iterdir()):
        sys.exit(f"scale_cost.py: error: {folder} holds other files or other data; expected an empty or new folder")
    start = time.perf_counter()
    write_avmnist(folder / "avmnist", *plan["avmnist"])
    write_iemocap(folder / "iemocap", plan["iemocap"])
    marker.write_text(json.dumps(plan))
    return f"data written to {folder} in {time.perf_counter() - start:.0f} s"


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
    from utils.trial import TrialBuilder

    phases = {"imports": time.perf_counter() - started}
    args = script.parse_args([*data_options(name, folder / "avmnist", folder / "iemocap"), "--device", device,
                              "--no_progress", "--output_dir", str(work / "runs"), "--cache_dir", str(work / "cache")])
    experiment = script.build_experiment(args)  # loads and checks the data, builds the teacher
    phases["data"] = time.perf_counter() - started - phases["imports"]
    trials = TrialBuilder(experiment, args)  # the teacher to the device; the disk cache's key hashes weights and data
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


def teacher_cost(folder: Path, device: str, rounds: int) -> str:
    """--teacher: V->A's one-epoch run without and with its teacher, and the cache build against a batched forward."""
    import torch

    import AVMNIST_V2A
    from utils.teacher_features import TeacherFeatureCache

    if not (folder / "SCALE_COST_TEACHER").is_file():
        write_avmnist(folder / "avmnist", *TEACHER_SIZES)
        (folder / "SCALE_COST_TEACHER").touch()
    argv = [*data_options("AVMNIST_V2A", folder / "avmnist", folder), "--device", device, "--no_progress"]
    experiment = AVMNIST_V2A.build_experiment(AVMNIST_V2A.parse_args(argv))
    teacher, inputs, keys = experiment.teacher.to(torch.device(device)), experiment.teacher_inputs, np.arange(4096)
    ready = [[inputs[k] for k in keys[first:first + 256]] for first in range(0, len(keys), 256)]

    def forward() -> None:
        with torch.inference_mode():
            for batch in ready:
                teacher.encode(batch)

    def run(lam: str) -> None:
        subprocess.run([sys.executable, "AVMNIST_V2A.py", *argv, "--epochs", "1", "--n_times", "1", "--lam", lam,
                        "--output_dir", runs], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)

    works = {"lam 0": lambda: run("0"), "lam 0.3": lambda: run("0.3"), "forward": forward,
             "cache": lambda: TeacherFeatureCache(teacher, inputs, teacher.device, progress=False).prepare(keys)}
    now = clock(torch.device(device)) if device != "cpu" else lambda: sum(os.times()[:4])  # with the children's
    seconds = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="scale_cost_") as runs:
        for k in range(rounds):
            for order in (("lam 0", "lam 0.3"), ("forward", "cache", "forward", "cache")):  # each second one counts
                for which in (order if k % 2 == 0 else order[::-1]):
                    start = now()
                    works[which]()
                    seconds[which].append(now() - start)
    seconds |= {which: seconds[which][1::2] for which in ("forward", "cache")}
    run_ratio = statistics.median(b / a for a, b in zip(seconds["lam 0"], seconds["lam 0.3"]))
    speed_ratio = statistics.median(f / c for f, c in zip(seconds["forward"], seconds["cache"]))
    return (table(["V->A items", "lam 0 s", "lam 0.3 s", "lam 0.3 / 0", "cache s", "forward s", "forward / cache"],
                  [[f"{TEACHER_SIZES[0]:,} + {TEACHER_SIZES[1]:,}",
                    *(f"{statistics.median(seconds[w]):.1f}" for w in ("lam 0", "lam 0.3")), f"{run_ratio:.3f}",
                    *(f"{statistics.median(seconds[w]):.2f}" for w in ("cache", "forward")), f"{speed_ratio:.3f}"]])
            + f"\none epoch's run without and with the teacher; the cache's build of {len(keys):,} features against "
              f"the batched forward of the same images\n(medians over {rounds} rounds; a ratio is the median of each "
              "round's own; goals: lam 0.3 / 0 <= 1.12, forward / cache >= 0.8)")


def report(costs: dict[str, dict]) -> None:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="where the data are written once (not the repo)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--only", nargs="+", choices=EXPERIMENTS, default=EXPERIMENTS)
    parser.add_argument("--fraction", type=float, default=1.0, help="of the real sizes (another --data folder)")
    parser.add_argument("--steps", type=int, default=8, help="training steps (and validation batches) timed")
    parser.add_argument("--teacher", action="store_true", help="only what V->A's teacher costs a run (above)")
    parser.add_argument("--rounds", type=int, default=3, help="of --teacher")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:  # the last line of stdout is the result
        with tempfile.TemporaryDirectory(prefix="scale_cost_") as work:
            print(json.dumps(measure(options.child, options.data, options.device, options.steps, Path(work))))
        return 0
    if options.teacher:
        print(f"== the V->A teacher's cost: device {options.device} ==\n{machine()}")
        print(teacher_cost(options.data, options.device, options.rounds))
        return 0
    started = time.perf_counter()
    print(write_data(options.data, options.fraction), file=sys.stderr)
    costs = {}
    for name in [name for name in EXPERIMENTS if name in options.only]:
        print(f"[{time.perf_counter() - started:5.0f} s] {name}", file=sys.stderr, flush=True)
        child = subprocess.run([sys.executable, __file__, "--child", name, "--data", str(options.data), "--device",
                                options.device, "--steps", str(options.steps)], stdout=subprocess.PIPE, text=True,
                               check=True)
        costs[name] = json.loads(child.stdout.splitlines()[-1])
    print(f"\n== scale cost: device {options.device}, data {options.fraction:g} x the real sizes ==\n{machine()}")
    report(costs)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
