"""What the frozen teacher costs per training epoch, with the teacher feature cache and with the teacher in the loop.

For each experiment, on small synthetic data, with teachers (and IEMOCAP students) of the real architectures at
random init, three trials of one seed are built as the scripts build them (`parse_args`, `build_experiment`,
`utils.trial.Trials`) and their training epochs (`utils.loop.run_epoch`) are timed:

    a  --lam 0                          the student alone
    b  --lam 0.3                        with the teacher feature cache (the default)
    c  --lam 0.3 --teacher_cache off    with the teacher run in the loop

The three, and the train loader read alone, are timed side by side in rounds whose order reverses every other
round (a b c loader, loader c b a, ...), so that a drift of a shared machine's speed hits them alike; cells are
medians over the rounds, ratios the medians of each round's own ratio. Then a short training with tiny models
(`run_experiment`, same seed) gives the test accuracy with the cache and with the in-loop teacher.

    HF_HUB_OFFLINE=1 python benchmarks/teacher_cost.py --quick      # 3 to 4 minutes on a shared 2-core CPU
    HF_HUB_OFFLINE=1 python benchmarks/teacher_cost.py              # more data and rounds
    HF_HUB_OFFLINE=1 python benchmarks/teacher_cost.py --device cuda --only AVMNIST_A2V IEMOCAP_A2T
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file, the root is not on the path
# Spinning OpenMP threads make timings on a CPU shared with other jobs several times slower and noisy; the
# policy must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import AVMNIST_A2V  # noqa: E402
import AVMNIST_V2A  # noqa: E402
import IEMOCAP_A2T  # noqa: E402
import IEMOCAP_T2A  # noqa: E402
from datasets.tools.synthetic import write_synthetic_avmnist  # noqa: E402
from datasets.tools.synthetic_iemocap import write_synthetic_iemocap  # noqa: E402
from models.tiny import save_resnet18_state_dict, save_tiny_bert, save_tiny_wav2vec2  # noqa: E402
from utils.loop import run_epoch  # noqa: E402
from utils.processes import resolve_device  # noqa: E402
from utils.run import run_experiment  # noqa: E402
from utils.trial import Trials  # noqa: E402

SCRIPTS = {script.SCRIPT: script for script in (AVMNIST_V2A, AVMNIST_A2V, IEMOCAP_T2A, IEMOCAP_A2T)}
MODES = {"a": ["--lam", "0"], "b": ["--lam", "0.3"], "c": ["--lam", "0.3", "--teacher_cache", "off"]}
# Each experiment's pretrained models: the option that loads one, and the tiny model of the accuracy check.
MODELS = {"AVMNIST_V2A": {"--teacher_path": "resnet18"}, "AVMNIST_A2V": {"--teacher_path": "wav2vec2"},
          "IEMOCAP_T2A": {"--teacher_path": "bert", "--student_path": "wav2vec2"},
          "IEMOCAP_A2T": {"--teacher_path": "wav2vec2", "--student_path": "bert"}}


@dataclass(frozen=True)
class Plan:
    avmnist_train: int  # items of the AVMNIST training array (the split keeps 90 % for training, 10 % for val)
    avmnist_test: int
    iemocap_per_class: int  # utterances of each of the six classes
    iemocap_subset: int  # --subset: the first N items of each IEMOCAP split
    rounds: int
    epochs: int  # of the accuracy check


PLANS = {"quick": Plan(avmnist_train=24, avmnist_test=12, iemocap_per_class=2, iemocap_subset=4, rounds=3, epochs=1),
         "default": Plan(avmnist_train=160, avmnist_test=100, iemocap_per_class=6, iemocap_subset=16, rounds=5,
                         epochs=3)}


def data_options(script: ModuleType, avmnist: Path, iemocap: Path, plan: Plan) -> list[str]:
    if script in (AVMNIST_V2A, AVMNIST_A2V):
        return ["--data_root", str(avmnist)]
    return ["--audio_dir", str(iemocap), "--text_dir", str(iemocap / "IEMOCAP" / "texts"),
            "--subset", str(plan.iemocap_subset), "--warmup_epochs", "0"]


def timed(work: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def read_loader(loader: DataLoader) -> None:
    for _ in loader:
        pass


@dataclass
class Cost:
    """What one experiment's timings measured."""

    tag: str
    train_items: int
    batches: int  # training batches an epoch
    seconds: dict[str, list[float]]  # per mode (and "loader"), one sample a round
    cache_seconds: float
    cache_rows: int
    cache_bytes: int

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])

    def ratio(self, top: str, bottom: str) -> float:
        return statistics.median(x / y for x, y in zip(self.seconds[top], self.seconds[bottom]))


def measure_cost(script: ModuleType, argv: list[str], rounds: int) -> Cost:
    """Build the trials of modes a, b and c, train each one epoch to warm up, then time them in rounds."""
    trials, features = {}, {}
    for mode, extra in MODES.items():
        args = script.parse_args([*argv, *extra])
        builder = Trials(script.build_experiment(args), args)
        trials[mode] = builder.build(args.random_seed, builder.split_record(args.random_seed))
        features[mode] = builder.features
        run_epoch(trials[mode], "train", "the warm-up")  # lazy initialisation and first allocations
    works = {mode: partial(run_epoch, trial, "train", "a timed epoch") for mode, trial in trials.items()}
    works["loader"] = partial(read_loader, trials["b"].loaders["train"])
    seconds = {name: [] for name in works}
    for k in range(rounds):
        for name in (list(works) if k % 2 == 0 else list(reversed(works))):
            seconds[name].append(timed(works[name], trials["b"].device))
    b, cache = trials["b"], features["b"]
    return Cost(b.experiment.tag, len(b.splits["train"].dataset), len(b.loaders["train"]), seconds,
                cache.build_seconds, len(cache), cache.nbytes)


def test_accuracy(script: ModuleType, argv: list[str]) -> float:
    """The test accuracy of one trial, run as the script runs it."""
    args = script.parse_args(argv)
    # The run's log lines would drown the tables; so would scikit-learn's warning that a tiny test split lacks
    # a predicted class.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        results = run_experiment(script.build_experiment(args), args)
    return results["summary"]["test_acc_mean"]


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns aligned: the first to the left, the others to the right."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = [header, ["-" * width for width in widths], *rows]
    return "\n".join("  ".join(str(cell).rjust(width) if i else str(cell).ljust(width)
                               for i, (cell, width) in enumerate(zip(line, widths))) for line in lines)


def report(costs: list[Cost], accuracies: list[tuple[float, float]]) -> None:
    """One table per question; `accuracies`: (cache, in-loop) test accuracy of each experiment of `costs`."""
    print(table(["experiment", "train items", "batches", "a lam 0 s", "b cache s", "c in-loop s", "b/a", "c/b"],
                [[c.tag, c.train_items, c.batches, f"{c.median('a'):.3f}", f"{c.median('b'):.3f}",
                  f"{c.median('c'):.3f}", f"{c.ratio('b', 'a'):.3f}", f"{c.ratio('c', 'b'):.2f}"] for c in costs]))
    print("seconds per training epoch (median over the rounds); b/a, c/b: median of each round's ratio\n")
    print(table(["experiment", "cache build s", "features", "cache MiB"],
                [[c.tag, f"{c.cache_seconds:.2f}", c.cache_rows, f"{c.cache_bytes / 2**20:.2f}"] for c in costs]))
    print("the cache's one-time build: each block of teacher inputs the trial needs, once\n")
    print(table(["experiment", "loader s", "loader/b"],
                [[c.tag, f"{c.median('loader'):.4f}", f"{100 * c.ratio('loader', 'b'):.1f} %"] for c in costs]))
    print("the train loader read alone over an epoch, against b's training epoch\n")
    print(table(["experiment", "test acc cache %", "test acc in-loop %", "difference (points)"],
                [[c.tag, f"{100 * on:.2f}", f"{100 * off:.2f}", f"{100 * (on - off):+.2f}"]
                 for c, (on, off) in zip(costs, accuracies)]))
    print("after a short training with tiny models, one trial, the same seed")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="less data, 3 rounds: 3-4 min on 2 shared CPU cores")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--only", nargs="+", choices=list(SCRIPTS), default=list(SCRIPTS), metavar="SCRIPT",
                        help=f"only these experiments ({', '.join(SCRIPTS)})")
    options = parser.parse_args(argv)
    plan = PLANS["quick" if options.quick else "default"]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="teacher_cost_") as tmp:
        work = Path(tmp)
        avmnist = write_synthetic_avmnist(work / "avmnist", plan.avmnist_train, plan.avmnist_test)
        iemocap = write_synthetic_iemocap(work / "iemocap", per_class=plan.iemocap_per_class)
        tiny = {"resnet18": save_resnet18_state_dict(work / "resnet18.pth"),
                "wav2vec2": save_tiny_wav2vec2(work / "wav2vec2"), "bert": save_tiny_bert(work / "bert")}
        costs, accuracies = [], []
        for name in options.only:
            script = SCRIPTS[name]
            argv = [*data_options(script, avmnist, iemocap, plan), "--device", options.device, "--no_progress",
                    "--output_dir", str(work / "runs")]
            print(f"[{time.perf_counter() - started:4.0f} s] {name}: timings", file=sys.stderr, flush=True)
            random_models = [part for option in MODELS[name] for part in (option, "random")]
            costs.append(measure_cost(script, [*argv, *random_models], plan.rounds))
            print(f"[{time.perf_counter() - started:4.0f} s] {name}: accuracy", file=sys.stderr, flush=True)
            tiny_models = [part for option, model in MODELS[name].items() for part in (option, str(tiny[model]))]
            check = [*argv, *tiny_models, "--epochs", str(plan.epochs), "--n_times", "1"]
            accuracies.append((test_accuracy(script, [*check, "--teacher_cache", "on"]),
                               test_accuracy(script, [*check, "--teacher_cache", "off"])))
    device = resolve_device(options.device, "0")
    print(f"\n== teacher cost: {'quick' if options.quick else 'default'} plan, device {device}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, "
          f"{plan.rounds} rounds ==")
    print("synthetic data; teachers and IEMOCAP students of the real architectures at random init\n")
    report(costs, accuracies)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
