"""What the frozen teacher costs per training epoch, with the feature cache and without (issue 4).

For each of the four experiments, on synthetic data of the stated sizes, with teachers and students
of the real architectures and sizes (random init: resnet18, wav2vec2-base, bert-base), one process
builds three trials of the same seed as the scripts build them (`parse_args`, `build_experiment`,
`utils.trial.Trials`), and times their training epochs (`utils.train.run_epoch` on the train loader):

    a  --lam 0                          the student alone
    b  --lam 0.3                        with the teacher feature cache (the default)
    c  --lam 0.3 --teacher_cache off    with the teacher run in the loop

Two more timings join them: the train loader alone, and the in-loop teacher alone on the batches of
c's latest epoch. On a shared CPU timings drift by tens of percent, so all five are taken in rounds,
side by side, the order reversed every other round; a cheap epoch is repeated within its timing until
that lasts about a second. Cells are medians over the rounds; ratios are medians of each round's ratio.
Memory: each mode is built and trains one warm-up epoch in turn, and the table reports what that
added at its peak (CPU: resident-set high-water mark, reset through /proc/self/clear_refs, Linux;
GPU: max allocated). Then short trainings with tiny models compare the test accuracy of the cache
with that of the in-loop teacher (same seed), and `--amp_check` compares bf16 autocast with fp32
(V->A, T->A): epoch time side by side and test accuracy.

    HF_HUB_OFFLINE=1 python benchmarks/teacher_cost.py --quick      # under 3 min on 2 CPU cores
    HF_HUB_OFFLINE=1 python benchmarks/teacher_cost.py              # larger data, more repeats
    HF_HUB_OFFLINE=1 python benchmarks/teacher_cost.py --device cuda --amp_check
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import gc
import io
import math
import os
import re
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator, Sequence

# Run as a file (`python benchmarks/teacher_cost.py`) the repository root is not on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# OpenMP threads that spin while waiting make every timing on a CPU shared with other jobs several times
# slower and very noisy (measured here: a wav2vec2-base forward 0.6 s instead of 0.14 s); must be set
# before torch loads its OpenMP runtime. OMP_WAIT_POLICY=ACTIVE in the environment restores spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from utils.train import TrialSetup, run_epoch  # noqa: E402

import AVMNIST_A2V  # noqa: E402
import AVMNIST_V2A  # noqa: E402
import IEMOCAP_A2T  # noqa: E402
import IEMOCAP_T2A  # noqa: E402
from datasets.tools.synthetic import write_synthetic_avmnist  # noqa: E402
from datasets.tools.synthetic_iemocap import write_synthetic_iemocap  # noqa: E402
from models.pretrained import RANDOM  # noqa: E402
from models.tiny import save_resnet18_state_dict, save_tiny_bert, save_tiny_wav2vec2  # noqa: E402
from utils.config import resolve_device  # noqa: E402
from utils.precise_bn import recompute_batchnorm_statistics  # noqa: E402
from utils.run import run_experiment  # noqa: E402
from utils.seed import set_seed  # noqa: E402
from utils.teacher_features import InLoopTeacher  # noqa: E402
from utils.trial import Trials  # noqa: E402

MODES = {"a": ["--lam", "0"], "b": ["--lam", "0.3"], "c": ["--lam", "0.3", "--teacher_cache", "off"]}


@dataclass(frozen=True)
class Benchmarked:
    """An experiment this benchmark measures: its script, the data it reads, the tiny models of its accuracy
    check, and its own targets besides b/a <= 1.10 (None: no such target)."""

    script: ModuleType
    data: str  # "avmnist" or "iemocap"
    tiny: tuple[tuple[str, str], ...]  # (option, tiny model) pairs of the accuracy check
    min_in_loop_slowdown: float | None = None  # c/b: what the cache saves against the in-loop teacher
    min_teacher_share: float | None = None  # (c - b) / teacher: the in-loop cost is the teacher's forward
    max_loader_share: float | None = None  # loader / b: data loading is not the bottleneck
    amp_check: bool = False  # one of the experiments of --amp_check


# Everything the benchmark knows of each experiment, in one place.
BENCHMARKED = (
    Benchmarked(AVMNIST_V2A, "avmnist", (("--teacher_path", "resnet18"),), max_loader_share=0.10, amp_check=True),
    Benchmarked(AVMNIST_A2V, "avmnist", (("--teacher_path", "wav2vec2"),), min_in_loop_slowdown=5.0,
                max_loader_share=0.10),
    Benchmarked(IEMOCAP_T2A, "iemocap", (("--teacher_path", "bert"), ("--student_path", "wav2vec2")), amp_check=True),
    Benchmarked(IEMOCAP_A2T, "iemocap", (("--teacher_path", "wav2vec2"), ("--student_path", "bert")),
                min_teacher_share=0.9),
)


@dataclass(frozen=True)
class Plan:
    """The sizes of a benchmark run (`--quick` or default)."""

    avmnist_train: int  # items of the AVMNIST train array (90 % train split, 10 % val)
    avmnist_test: int
    iemocap_per_class: int  # utterances per class of the synthetic IEMOCAP (6 classes)
    iemocap_subset: int | None  # --subset: the first N items of each IEMOCAP split
    repeats: int  # rounds of timings
    check_epochs: int  # epochs of the accuracy checks
    check_test: int  # AVMNIST test items of the accuracy checks (1 point = test/100 items)


# Training batches an epoch: quick 1 (AVMNIST, 32 items) and 1 (IEMOCAP, 4 items); default 4 and 4.
PLANS = {"quick": Plan(avmnist_train=40, avmnist_test=10, iemocap_per_class=2, iemocap_subset=4, repeats=3,
                       check_epochs=2, check_test=100),
         "default": Plan(avmnist_train=160, avmnist_test=40, iemocap_per_class=6, iemocap_subset=16, repeats=5,
                         check_epochs=3, check_test=200)}
MIN_TIMING_SECONDS = 1.0
MAX_REPETITIONS = 50
# The full AVMNIST training epoch of the README runs, and the default --precise_bn: the precise BatchNorm
# pass is projected to this size from the per-item times measured here.
FULL_AVMNIST_TRAIN_ITEMS = 54_000
PRECISE_BN_ITEMS = 8192


# ----------------------------------------------------------------------------------------------------- memory
def _proc_status_kib(field_name: str) -> int:
    return int(re.search(rf"^{field_name}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def _return_free_heap() -> None:
    # glibc keeps freed heap pages resident; without this a mode could reuse an earlier mode's pages unseen.
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


@contextlib.contextmanager
def peak_increase(device: torch.device) -> Iterator[dict[str, int]]:
    """Bytes a block adds to memory at its peak: CUDA max allocated, or the CPU resident set's high-water
    mark (Linux: /proc/self/clear_refs resets it, unlike the monotone ru_maxrss) over the start."""
    gc.collect()
    result: dict[str, int] = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        _return_free_heap()
        Path("/proc/self/clear_refs").write_text("5")
        base = 1024 * _proc_status_kib("VmRSS")
    yield result
    if device.type == "cuda":
        result["bytes"] = torch.cuda.max_memory_allocated(device) - base
    else:
        result["bytes"] = 1024 * _proc_status_kib("VmHWM") - base


# ----------------------------------------------------------------------------------------------------- timing
def _timed(device: torch.device, work: Callable[[], object]) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def repetitions(first_seconds: float) -> int:
    """Epochs per timing so that a cheap epoch is timed over about MIN_TIMING_SECONDS (scheduler noise)."""
    return max(1, min(MAX_REPETITIONS, math.ceil(MIN_TIMING_SECONDS / max(first_seconds, 1e-6))))


def alternate(device: torch.device, timings: dict[str, tuple[Callable[[], object], int]],
              repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each (work, n): `repeats` rounds timing n calls of each, the order reversed every
    other round (A B C, C B A, ...) so that a steady drift of the machine's speed cancels out."""
    seconds: dict[str, list[float]] = {name: [] for name in timings}
    for round_ in range(repeats):
        for name in (list(timings) if round_ % 2 == 0 else list(reversed(timings))):
            work, n = timings[name]
            seconds[name].append(_timed(device, lambda: [work() for _ in range(n)]) / n)
    return seconds


class RecordingTeacher:
    """The in-loop teacher, remembering each batch's keys so that the teacher can be timed alone on them."""

    def __init__(self, source: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.source, self.batches = source, []

    def __call__(self, keys: torch.Tensor) -> torch.Tensor:
        self.batches.append(keys)
        return self.source(keys)

    def replay(self) -> None:
        for keys in self.batches:
            self.source(keys)


@dataclass
class Mode:
    """One mode's trial, as `run_trials` builds its first trial, and its teacher source as the loop sees it."""

    tag: str
    args: argparse.Namespace
    setup: TrialSetup
    source: Callable[[torch.Tensor], torch.Tensor] | None
    scaler: torch.amp.GradScaler | None

    def train_epoch(self) -> None:
        """One training epoch, exactly as `train_trial` runs it."""
        if isinstance(self.source, RecordingTeacher):
            self.source.batches = []
        run_epoch(self.setup.student, self.setup.loaders["train"], lam=self.setup.lam, device=self.setup.device,
                  teacher_features=self.source, partner_keys=self.setup.partners.draw,
                  optimizer=self.setup.optimizer, scaler=self.scaler, amp_dtype=self.setup.amp_dtype)

    def recalibrate(self) -> None:
        """The precise BatchNorm pass before an evaluation, exactly as `train_trial` runs it."""
        recompute_batchnorm_statistics(self.setup.student, self.setup.loaders["precise_bn"], self.setup.device,
                                       self.setup.amp_dtype)

    def read_loader(self) -> None:
        """One epoch of the train loader without the model."""
        for _ in self.setup.loaders["train"]:
            pass


def build_mode(script: ModuleType, argv: list[str], folder: Path) -> Mode:
    args = script.parse_args(argv)
    set_seed(args.random_seed)  # random teachers of the same architecture get the same weights in every mode
    trials = Trials(script.build_experiment(args), args)
    folder.mkdir(parents=True)
    setup = trials.build(args.random_seed, folder)
    source = RecordingTeacher(trials.features) if isinstance(trials.features, InLoopTeacher) else trials.features
    scaler = torch.amp.GradScaler(trials.device.type) if setup.amp_dtype == torch.float16 else None
    return Mode(trials.experiment.tag, args, setup, source, scaler)


def describe_data(mode: Mode) -> str:
    """What one training epoch reads: items, batches and the shapes of a training batch."""
    args, setup = mode.args, mode.setup
    sizes = "/".join(str(len(setup.splits[name].dataset)) for name in ("train", "val", "test"))
    batch = next(iter(setup.loaders["train"]))
    shapes = ", ".join(f"{name} {tuple(value.shape)}" for name, value in batch.inputs.items())
    return (f"train/val/test {sizes} items, batch {args.batch_size}, {len(setup.loaders['train'])} training batches "
            f"an epoch; a training batch: {shapes}")


# ----------------------------------------------------------------------------------------------- benchmark
@dataclass
class Result:
    """What one experiment measured (seconds per repeat, bytes)."""

    experiment: Benchmarked
    tag: str
    data: str
    seconds: dict[str, list[float]]
    memory: dict[str, int]
    cache_build: float
    cache_rows: int
    cache_dim: int
    cache_bytes: int
    train_items: int  # samples of one training epoch
    precise_bn_items: int  # samples of the precise BatchNorm pass (0: a student without BatchNorm)

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])

    def ratio(self, top: str, bottom: str) -> float:
        """The median of the rounds' ratios: each round's timings were taken side by side."""
        return statistics.median(x / y for x, y in zip(self.seconds[top], self.seconds[bottom]))


def measure(experiment: Benchmarked, argv: list[str], repeats: int, work: Path) -> Result:
    """Build modes a, b and c of the experiment one after another (memory), then time them side by side."""
    script = experiment.script
    device = resolve_device(script.parse_args(argv))
    modes, memory, first = {}, {}, {}
    for name, extra in MODES.items():
        with peak_increase(device) as used:
            modes[name] = build_mode(script, [*argv, *extra], work / f"{script.SCRIPT}_{name}")
            # The first epoch also warms up: first-epoch allocations, lazy initialisation, kernels per shape.
            first[name] = _timed(device, modes[name].train_epoch)
        memory[name] = used["bytes"]
    a_and_b = repetitions(min(first["a"], first["b"]))  # the same epochs for both: their batch orders match
    in_loop = modes["c"].source
    timings = {
        "a": (modes["a"].train_epoch, a_and_b), "b": (modes["b"].train_epoch, a_and_b),
        "c": (modes["c"].train_epoch, repetitions(first["c"])),
        "loader": (modes["b"].read_loader, repetitions(_timed(device, modes["b"].read_loader))),
        "teacher": (in_loop.replay, repetitions(first["c"]))}
    loaders = modes["b"].setup.loaders
    if "precise_bn" in loaders:
        timings["precise_bn"] = (modes["b"].recalibrate, repetitions(_timed(device, modes["b"].recalibrate)))
    seconds = alternate(device, timings, repeats)
    cache = modes["b"].source
    return Result(experiment, modes["b"].tag, describe_data(modes["b"]), seconds, memory, cache.build_seconds,
                  len(cache), cache.features.shape[1], cache.nbytes,
                  train_items=len(loaders["train"]) * loaders["train"].batch_size,
                  precise_bn_items=len(loaders["precise_bn"].dataset) if "precise_bn" in loaders else 0)


def random_init(experiment: Benchmarked) -> list[str]:
    """The options that build the experiment's pretrained models (teacher, IEMOCAP student) at random."""
    return [part for option, _ in experiment.tiny for part in (option, RANDOM)]


def tiny_model_files(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True)
    return {"resnet18": str(save_resnet18_state_dict(folder / "resnet18.pth")),
            "wav2vec2": str(save_tiny_wav2vec2(folder / "wav2vec2")),
            "bert": str(save_tiny_bert(folder / "bert"))}


def accuracy_after_training(script: ModuleType, argv: list[str], option: str, values: Sequence[str]) -> list[float]:
    """Test accuracy of one seeded trial (run_experiment, as the script runs it) for each value of `option`."""
    accuracies = []
    for value in values:
        args = script.parse_args([*argv, option, value])
        set_seed(args.random_seed)  # the same random teacher weights for every value
        # The runs' own log lines would drown the tables; so would scikit-learn's warning that a tiny
        # test split lacks a predicted class.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
            results = run_experiment(script.build_experiment(args), args)
        accuracies.append(results["summary"]["test_acc_mean"])
    return accuracies


# ------------------------------------------------------------------------------------------------- output
def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(str(cell).rjust(w) if i else str(cell).ljust(w) for i, (cell, w)
                               in enumerate(zip(line, widths))) for line in lines)


def progress(started: float, what: str) -> None:
    print(f"[{time.perf_counter() - started:5.0f} s] {what} ...", file=sys.stderr, flush=True)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.0f} MiB"


def report(results: list[Result], memory_kind: str) -> list[list[str]]:
    """Print the timing and memory tables; return the rows of the timing targets."""
    rows, targets = [], []
    for r in results:
        a, b, c, loader, teacher = (r.median(name) for name in ("a", "b", "c", "loader", "teacher"))
        b_a, c_b, loader_b = r.ratio("b", "a"), r.ratio("c", "b"), r.ratio("loader", "b")
        saved = statistics.median((c_ - b_) / t for c_, b_, t in zip(*(r.seconds[n] for n in ("c", "b", "teacher"))))
        rows.append([r.tag, f"{a:.3f}", f"{b:.3f}", f"{c:.3f}", f"{r.cache_build:.2f}", f"{b_a:.3f}", f"{c_b:.2f}",
                     f"{loader:.4f}", f"{100 * loader_b:.1f} %", f"{teacher:.3f}", f"{100 * saved:.0f} %"])
        targets.append([verdict(b_a <= 1.10), "b/a <= 1.10", r.tag, f"{b_a:.3f}"])
        wanted = r.experiment
        if wanted.min_in_loop_slowdown is not None:
            targets.append([verdict(c_b >= wanted.min_in_loop_slowdown), f"c/b >= {wanted.min_in_loop_slowdown:g}",
                            r.tag, f"{c_b:.2f}"])
        if wanted.min_teacher_share is not None:
            targets.append([verdict(saved >= wanted.min_teacher_share),
                            f"c-b >= {100 * wanted.min_teacher_share:.0f} % of the in-loop teacher's time", r.tag,
                            f"{100 * saved:.0f} % ({c - b:.3f} s of {teacher:.3f} s); c/b {c_b:.2f}"])
        if wanted.max_loader_share is not None:
            targets.append([verdict(loader_b <= wanted.max_loader_share),
                            f"loader <= {100 * wanted.max_loader_share:.0f} % of a training epoch", r.tag,
                            f"{100 * loader_b:.1f} %"])
    print(table(["experiment", "a lam0 s", "b cache s", "c in-loop s", "cache build s", "b/a", "c/b",
                 "loader s", "loader/b", "teacher s", "(c-b)/teacher"], rows))
    print("\ns: seconds per training epoch, median over the rounds; ratios: median of the rounds' ratios (paired);\n"
          "cache build: once per run; loader: the train loader alone for one epoch; teacher: the in-loop teacher\n"
          "alone on the batches of c's latest epoch.\n")
    print(table(["experiment", "cache rows x dim", "cache bytes", f"{memory_kind} a", "b", "c"],
                [[r.tag, f"{r.cache_rows} x {r.cache_dim}", f"{r.cache_bytes:,}", *(mib(r.memory[m]) for m in MODES)]
                 for r in results]))
    print(f"\ncache rows: each distinct teacher input of the trial once (float32); {memory_kind}: what building "
          "the mode's trial\n(data, teacher, cache, student, optimizer) and one training epoch added at the peak; "
          "a is built first and\nalso carries the process's one-time allocations (CPU: tens of MiB).\n")
    targets += precise_bn_report([r for r in results if r.precise_bn_items])
    print("samples (seconds per epoch in each round):")
    for r in results:
        print(f"  {r.tag}: " + "; ".join(f"{name} " + " ".join(f"{x:.3f}" for x in values)
                                         for name, values in r.seconds.items()))
    return targets


def precise_bn_report(results: list[Result]) -> list[list[str]]:
    """Print what the precise BatchNorm pass costs against a training epoch (mode b), here and projected to the
    README's full AVMNIST epoch; return the target rows."""
    rows, targets = [], []
    for r in results:
        here = r.ratio("precise_bn", "b")
        # Per item, the pass is a forward without backward; scale both sides to the full sizes.
        full = here * (PRECISE_BN_ITEMS / r.precise_bn_items) / (FULL_AVMNIST_TRAIN_ITEMS / r.train_items)
        rows.append([r.tag, str(r.precise_bn_items), str(r.train_items), f"{r.median('precise_bn'):.3f}",
                     f"{r.median('b'):.3f}", f"{100 * here:.1f} %", f"{100 * full:.1f} %"])
        targets.append([verdict(full <= 0.10), "precise BN pass <= 10 % of a full-size epoch", r.tag,
                        f"{100 * full:.1f} %"])
    print(table(["experiment", "BN pass items", "epoch items", "BN pass s", "epoch s (b)", "BN pass/epoch",
                 f"projected: {PRECISE_BN_ITEMS} of {FULL_AVMNIST_TRAIN_ITEMS:,}"], rows))
    print("\nBN pass: the precise BatchNorm statistics before an evaluation (--precise_bn, here the whole training "
          "split);\nprojected: the same per-item times for the README's AVMNIST epoch and the default --precise_bn.\n")
    return targets


@dataclass
class Bench:
    """The benchmark's data, options and working folder."""

    plan: Plan
    repeats: int
    device: torch.device
    work: Path
    avmnist: Path  # timing data
    avmnist_check: Path  # accuracy-check data: more items, so that one point is at most one test item
    iemocap: Path
    common: list[str]  # device, no progress bars, output folder

    def argv(self, experiment: Benchmarked, avmnist: Path, *extra: str) -> list[str]:
        if experiment.data == "avmnist":
            data = ["--data_root", str(avmnist)]
        else:
            subset = ["--subset", str(self.plan.iemocap_subset)] if self.plan.iemocap_subset else []
            data = ["--audio_dir", str(self.iemocap), "--text_dir", str(self.iemocap / "IEMOCAP" / "texts"),
                    "--warmup_epochs", "0", *subset]
        return [*data, *self.common, *extra]

    def check_budget(self) -> list[str]:
        return ["--epochs", str(self.plan.check_epochs), "--n_times", "1"]


def cache_agreement(bench: Bench, experiments: Sequence[Benchmarked], amp: str, started: float) -> list[list[str]]:
    """Train each experiment with the cache and with the in-loop teacher (tiny teachers, same seed); print the
    test accuracies and return the target rows."""
    tiny = tiny_model_files(bench.work / "tiny")
    rows, targets = [], []
    for experiment in experiments:
        script = experiment.script
        progress(started, f"accuracy check {script.SCRIPT}")
        tiny_paths = [part for option, model in experiment.tiny for part in (option, tiny[model])]
        argv = bench.argv(experiment, bench.avmnist_check, *tiny_paths, *bench.check_budget(), "--amp", amp)
        on, off = accuracy_after_training(script, argv, "--teacher_cache", ["on", "off"])
        rows.append([script.SCRIPT, f"{100 * on:.2f}", f"{100 * off:.2f}", f"{100 * abs(on - off):.2f}"])
        targets.append([verdict(abs(on - off) <= 0.01), "test acc cache vs in-loop within 1 point", script.SCRIPT,
                        f"{100 * on:.2f} vs {100 * off:.2f}"])
    plan = bench.plan
    print(f"\naccuracy, cache vs in-loop teacher (tiny teachers, {plan.check_epochs} epochs at the README batch size, "
          f"1 trial, same seed; AVMNIST {2 * plan.avmnist_train} train / {plan.check_test} test items, "
          "IEMOCAP as above):")
    print(table(["experiment", "test acc cache %", "test acc in-loop %", "|diff| points"], rows))
    return targets


def amp_comparison(bench: Bench, experiments: Sequence[Benchmarked], started: float) -> None:
    """bf16 autocast against fp32 in mode b (real sizes): epoch time side by side, and test accuracy."""
    rows = []
    for experiment in experiments:
        script = experiment.script
        progress(started, f"amp check {script.SCRIPT}")
        argv = bench.argv(experiment, bench.avmnist_check, *random_init(experiment), *MODES["b"])
        pair = {name: build_mode(script, [*argv, "--amp", amp], bench.work / f"amp_{script.SCRIPT}_{amp}")
                for name, amp in (("fp32", "none"), ("bf16", "bf16"))}
        first = min(_timed(bench.device, mode.train_epoch) for mode in pair.values())  # also the warm-up
        seconds = alternate(bench.device, {name: (mode.train_epoch, repetitions(first)) for name, mode in pair.items()},
                            bench.repeats)
        speedup = statistics.median(x / y for x, y in zip(seconds["fp32"], seconds["bf16"]))
        fp32, bf16 = accuracy_after_training(script, [*argv, *bench.check_budget()], "--amp", ["none", "bf16"])
        rows.append([script.SCRIPT, f"{statistics.median(seconds['fp32']):.3f}",
                     f"{statistics.median(seconds['bf16']):.3f}", f"{speedup:.2f}x", f"{100 * fp32:.2f}",
                     f"{100 * bf16:.2f}"])
    print(f"\n--amp bf16 vs fp32 (mode b, real sizes, random init; accuracy after {bench.plan.check_epochs} epochs "
          f"at the README batch size, data of the accuracy check):")
    print(table(["experiment", "fp32 s/epoch", "bf16 s/epoch", "speed-up", "test acc fp32 %", "test acc bf16 %"],
                rows))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small data, 3 repeats: under 3 min on 2 CPU cores")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none", help="autocast in every mode")
    parser.add_argument("--amp_check", action="store_true",
                        help="also compare bf16 autocast with fp32 for V->A and T->A: epoch time and test accuracy")
    parser.add_argument("--repeats", type=int, help="rounds of timings (default 3 quick, 5 otherwise)")
    parser.add_argument("--only", nargs="+", choices=[e.script.SCRIPT for e in BENCHMARKED],
                        help="only these experiments")
    options = parser.parse_args(argv)
    plan = PLANS["quick" if options.quick else "default"]
    experiments = [e for e in BENCHMARKED if not options.only or e.script.SCRIPT in options.only]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="teacher_cost_") as tmp:
        work = Path(tmp)
        avmnist = write_synthetic_avmnist(work / "avmnist", plan.avmnist_train, plan.avmnist_test)
        common = ["--device", options.device, "--no_progress", "--output_dir", str(work / "runs")]
        bench = Bench(plan, options.repeats or plan.repeats,
                      resolve_device(AVMNIST_V2A.parse_args(["--data_root", str(avmnist), *common])), work,
                      avmnist, write_synthetic_avmnist(work / "avmnist_check", 2 * plan.avmnist_train, plan.check_test,
                                                       seed=1),
                      write_synthetic_iemocap(work / "iemocap", per_class=plan.iemocap_per_class), common)
        results = []
        for experiment in experiments:
            progress(started, f"measuring {experiment.script.SCRIPT}")
            argv = bench.argv(experiment, avmnist, *random_init(experiment), "--amp", options.amp)
            results.append(measure(experiment, argv, bench.repeats, work / "bench"))

        print(f"\n== Teacher cost per training epoch: {'quick' if options.quick else 'default'} plan, device "
              f"{bench.device}, amp {options.amp}, torch {torch.__version__}, {torch.get_num_threads()} threads "
              f"(OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}), {bench.repeats} rounds, modes alternating ==")
        print("teachers and students: real architectures and sizes, random init (--teacher_path random, "
              "--student_path random)\ndata (synthetic):")
        for r in results:
            print(f"  {r.tag}: {r.data}")
        print()
        targets = report(results, "max allocated +" if bench.device.type == "cuda" else "RSS peak +")
        targets += cache_agreement(bench, experiments, options.amp, started)
        if options.amp_check:
            amp_comparison(bench, [e for e in experiments if e.amp_check], started)
    print("\ntargets:")
    print(table(["", "target", "experiment", "measured"], targets))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
