"""Steps per second of each student's training step: as the engine's loop runs it, compiled, and the step alone.

For each experiment (all four, or those of --only), on small synthetic data, with the student of the real
architecture at random init and the README batch size (32 AVMNIST, 4 IEMOCAP), trials are built as the scripts
build them (`parse_args`, `build_experiment`, `utils.trial.Trials`) and three things are timed:

    eager     run_epoch(trial, "train", ...): the training step as the engine runs it (loader, copies to the
              device, loss, optimizer, metrics), over one epoch
    limit     the student's forward, backward and optimizer step alone, as many steps on one fixed batch
              already on the device: what the loop can approach
    compiled  run_epoch on a trial built with --compile, after warm-up epochs that compile it (their compile
              seconds, `utils.processes.compile_seconds`, are shown apart and left out of its steps/s)

side by side in rounds whose order reverses every other round (eager limit compiled, compiled limit eager, ...),
so that a drift of a shared machine's speed hits them alike. Steps/s are medians over the rounds; loop/limit
(eager steps/s over limit steps/s) and compiled/eager are medians of each round's own ratio, printed with them.

All at --lam 0: with the teacher feature cache (the default) a step's teacher part is a lookup (the partners'
keys on the host, one small copy, a gather of B x D features) and an MSE term; teacher_cost.py measures what it
adds (b/a). A teacher at lam > 0 would also cost its cache build before the first step, here more than the
measurement itself. On CUDA each measurement also gives the trial's peak memory (`timed_with_peak`).

    HF_HUB_OFFLINE=1 python benchmarks/step_cost.py --quick --no_compile       # 4 minutes on a shared 2-core CPU
    HF_HUB_OFFLINE=1 python benchmarks/step_cost.py --quick --only AVMNIST_A2V  # 2 to 3 minutes, compiling
    HF_HUB_OFFLINE=1 python benchmarks/step_cost.py --device cuda              # the default plan, meant for a GPU
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
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
from teacher_cost import SCRIPTS, table, timed  # noqa: E402  (this folder's own benchmark)

from datasets.avmnist import TRAIN_SHARE  # noqa: E402
from datasets.tools.synthetic import write_synthetic_avmnist  # noqa: E402
from datasets.tools.synthetic_iemocap import write_synthetic_iemocap  # noqa: E402
from utils.experiment import Batch  # noqa: E402
from utils.loop import optimizer_step, run_epoch  # noqa: E402
from utils.processes import autocast, compile_seconds, on_device, resolve_device  # noqa: E402
from utils.trial import Trial, Trials  # noqa: E402

STUDENTS = {"AVMNIST_V2A": "ResNet-18, 1x112x112", "AVMNIST_A2V": "ResNet-18, 1x28x28",
            "IEMOCAP_T2A": "wav2vec2-base, audio", "IEMOCAP_A2T": "BERT-base, text"}
# A compiled trial trains epochs until one compiles nothing: a student fed inputs of another shape (a longer
# batch) compiles again, once with dynamic shapes.
MAX_WARM_UP_EPOCHS = 3


@dataclass(frozen=True)
class Plan:
    steps: int  # training steps an epoch: each measurement times one epoch (the limit: as many steps)
    rounds: int
    batch_size: int | None = None  # None: each script's README value
    # IEMOCAP: every utterance cut to at most this, so that nearly every batch pads to the same length and the
    # limit's fixed batch costs what an average batch of the loop does (the synthetic clips last 0.1-1 s).
    max_audio_seconds: float = 0.5


# --quick: one step a measurement in many rounds, for a shared CPU, whose load changes over seconds (short
# measurements alternated often cancel that best). The default is meant for a GPU, where an epoch also pays
# once for its loader's start and its metrics, which more steps amortise as a real epoch does.
PLANS = {"quick": Plan(steps=1, rounds=7), "default": Plan(steps=20, rounds=5)}


def batch_size(script: ModuleType, plan: Plan) -> int:
    return plan.batch_size or script.DEFAULTS["batch_size"]


def write_step_data(work: Path, plan: Plan) -> dict[str, list[str]]:
    """Synthetic AVMNIST and IEMOCAP with `plan.steps` training batches (`--subset` cuts every split to them);
    each script's data options, with a random IEMOCAP student."""
    avmnist_items = plan.steps * batch_size(SCRIPTS["AVMNIST_V2A"], plan)
    iemocap_items = plan.steps * batch_size(SCRIPTS["IEMOCAP_T2A"], plan)
    avmnist = write_synthetic_avmnist(work / "avmnist", n_train=math.ceil(avmnist_items / TRAIN_SHARE) + 1,
                                      n_test=10)
    train_share = min(SCRIPTS[name].SHARES[0] for name in ("IEMOCAP_T2A", "IEMOCAP_A2T"))
    per_class = math.ceil(iemocap_items / train_share / 6) + 1  # six classes
    iemocap = write_synthetic_iemocap(work / "iemocap", per_class=per_class)
    batch = ["--batch_size", str(plan.batch_size)] if plan.batch_size else []
    avmnist_options = ["--data_root", str(avmnist), "--subset", str(avmnist_items), *batch]
    iemocap_options = ["--audio_dir", str(iemocap), "--text_dir", str(iemocap / "IEMOCAP" / "texts"), "--subset",
                       str(iemocap_items), "--max_audio_seconds", str(plan.max_audio_seconds), "--student_path",
                       "random", *batch]
    return {name: avmnist_options if name.startswith("AVMNIST") else iemocap_options for name in SCRIPTS}


def build_trial(script: ModuleType, argv: list[str]) -> Trial:
    """The first trial of a run of `script` with `argv`, as the run builds it."""
    args = script.parse_args(argv)
    trials = Trials(script.build_experiment(args), args)
    return trials.build(args.random_seed, trials.split_record(args.random_seed))


def fixed_batch(trial: Trial) -> Batch:
    """A training batch of the split's first items, its tensors on the trial's device."""
    loader = trial.loaders["train"]
    dataset = trial.splits["train"].dataset
    batch = loader.collate_fn([dataset[i] for i in range(loader.batch_sampler.batch_size)])
    inputs = {name: on_device(value, trial.device) for name, value in batch.inputs.items()}
    return Batch(inputs, batch.labels.to(trial.device), batch.positions)


def limit_steps(trial: Trial, batch: Batch, steps: int) -> None:
    """`steps` training steps on `batch`, as `run_epoch` takes them, without the loop around them (lam is 0: no
    teacher feature)."""
    trial.trained.train()
    for _ in range(steps):
        with autocast(trial.device, trial.amp_dtype):
            logits, feature = trial.trained(**batch.inputs)
        optimizer_step(trial, trial.objective(logits, batch.labels, feature, None).loss)


def warm_up(trial: Trial) -> float:
    """Train epochs until one compiles nothing (an eager trial: one epoch, for lazy initialisation and the first
    allocations); return the seconds spent compiling."""
    before = compile_seconds()
    for _ in range(MAX_WARM_UP_EPOCHS):
        start = compile_seconds()
        run_epoch(trial, "train", "the warm-up")
        if compile_seconds() == start:
            break
    return compile_seconds() - before


def held_bytes(trial: Trial) -> int:
    """The device memory of the student's weights, buffers and gradients and of the optimizer's state."""
    tensors = [*trial.student.parameters(), *trial.student.buffers()]
    tensors += [p.grad for p in trial.student.parameters() if p.grad is not None]
    tensors += [value for state in trial.optimizer.state.values() for value in state.values()
                if isinstance(value, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors if t.device == trial.device)


def timed_with_peak(work: Callable[[], object], trial: Trial) -> tuple[float, int]:
    """Seconds of `work`, and on CUDA the trial's peak memory meanwhile: what it holds between steps
    (`held_bytes`) plus the most `work` allocated on top (max_memory_allocated, reset before it). Counted so, a
    trial's peak does not include another trial alive beside it."""
    if trial.device.type != "cuda":
        return timed(work, trial.device), 0
    torch.cuda.synchronize(trial.device)
    torch.cuda.reset_peak_memory_stats(trial.device)
    before = torch.cuda.memory_allocated(trial.device)
    seconds = timed(work, trial.device)
    return seconds, held_bytes(trial) + torch.cuda.max_memory_allocated(trial.device) - before


@dataclass
class StepCost:
    """What one experiment's measurements gave."""

    name: str  # the script
    steps: int  # training steps an epoch
    batch: int
    seconds: dict[str, list[float]]  # per measurement (eager, limit, compiled), one epoch's a round
    peak_bytes: dict[str, int]  # CUDA: the most of any round
    compile_seconds: float = 0.0  # the compiled trial's warm-up
    compile_in_rounds: float = 0.0  # compiling during the timed rounds (0 unless the warm-up missed a shape)

    def steps_per_second(self, name: str) -> float:
        return statistics.median(self.steps / s for s in self.seconds[name])

    def ratios(self, top: str, bottom: str) -> list[float]:
        """Each round's steps/s of `top` over those of `bottom`."""
        return [b / t for t, b in zip(self.seconds[top], self.seconds[bottom])]

    def ratio(self, top: str, bottom: str) -> float:
        return statistics.median(self.ratios(top, bottom))


def measure_steps(script: ModuleType, argv: list[str], plan: Plan, modes: Sequence[str] = ("eager", "limit"),
                  channels_last: bool = False) -> StepCost:
    """Time `modes` (of eager, limit, compiled) of one experiment in `plan.rounds` rounds. `channels_last` puts
    the students in that memory format (utils.processes.CHANNELS_LAST_ON_CUDA decides it for a run)."""
    argv = [*argv, "--lam", "0"]
    trials, works = {}, {}
    if "eager" in modes or "limit" in modes:
        trials["eager"] = build_trial(script, argv)
    if "compiled" in modes:
        # A fresh student is a new object to dynamo's guards: reset, so that it compiles as in a new process
        # (inductor's caches on disk stay) and earlier trials do not count towards its recompile limit.
        torch._dynamo.reset()
        trials["compiled"] = build_trial(script, [*argv, "--compile"])
    for trial in trials.values():
        if channels_last:
            trial.student.to(memory_format=torch.channels_last)
    compiling = {name: warm_up(trial) for name, trial in trials.items()}
    for name in modes:
        trial = trials["eager" if name == "limit" else name]
        works[name] = (partial(limit_steps, trial, fixed_batch(trial), plan.steps) if name == "limit"
                       else partial(run_epoch, trial, "train", "a timed epoch"))
    steps = len(next(iter(trials.values())).loaders["train"])
    cost = StepCost(script.SCRIPT, steps, batch_size(script, plan), {name: [] for name in modes},
                    {name: 0 for name in modes}, compiling.get("compiled", 0.0))
    before = compile_seconds()
    for k in range(plan.rounds):
        for name in (modes if k % 2 == 0 else list(reversed(modes))):
            # The same random state for each measurement of a round: a student that draws how much it computes
            # (wav2vec2's LayerDrop skips each layer with probability 0.1) then does the same work in each.
            torch.manual_seed(k)
            seconds, peak = timed_with_peak(works[name], trials["eager" if name == "limit" else name])
            cost.seconds[name].append(seconds)
            cost.peak_bytes[name] = max(cost.peak_bytes[name], peak)
    cost.compile_in_rounds = compile_seconds() - before
    return cost


def rounds_text(values: list[float]) -> str:
    return " ".join(f"{value:.2f}" for value in values)


def mib(count: int) -> str:
    """Bytes in MiB; "-" for none (the CPU: peak memory is measured on CUDA only)."""
    return f"{count / 2**20:,.0f} MiB" if count else "-"


def compile_text(cost: StepCost) -> str:
    extra = f" (+{cost.compile_in_rounds:.1f} in the timed rounds)" if cost.compile_in_rounds else ""
    return f"{cost.compile_seconds:.1f}{extra}"


def report(costs: list[StepCost]) -> None:
    rows = []
    for c in costs:
        compiled = "compiled" in c.seconds
        rows.append([SCRIPTS[c.name].TAG, STUDENTS[c.name], c.batch, c.steps, f"{c.steps_per_second('eager'):.3g}",
                     f"{c.steps_per_second('limit'):.3g}", f"{c.ratio('eager', 'limit'):.3f}",
                     rounds_text(c.ratios("eager", "limit")),
                     f"{c.steps_per_second('compiled'):.3g}" if compiled else "-",
                     f"{c.ratio('compiled', 'eager'):.3f}" if compiled else "-",
                     rounds_text(c.ratios("compiled", "eager")) if compiled else "-",
                     compile_text(c) if compiled else "-",
                     mib(c.peak_bytes["eager"])])
    print(table(["experiment", "student", "batch", "steps", "eager", "limit", "loop/limit", "per round",
                 "compiled", "compiled/eager", "per round", "compile s", "peak"], rows))
    print("eager, limit, compiled: steps per second (median over the rounds), each measurement an epoch of `steps`\n"
          "training steps; ratios: the median of each round's own ratio, then each round's; peak: the eager trial's\n"
          "memory at its peak (CUDA only)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="1 step a measurement, 7 rounds (default: 20 steps, 5 rounds)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--only", nargs="+", choices=list(SCRIPTS), default=list(SCRIPTS), metavar="SCRIPT",
                        help=f"only these experiments ({', '.join(SCRIPTS)})")
    parser.add_argument("--no_compile", action="store_true",
                        help="skip the compiled trial (inductor compiles for minutes on a small CPU)")
    options = parser.parse_args(argv)
    plan = PLANS["quick" if options.quick else "default"]
    modes = ("eager", "limit") if options.no_compile else ("eager", "limit", "compiled")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="step_cost_") as tmp:
        work = Path(tmp)
        data = write_step_data(work, plan)
        costs = []
        for name in options.only:
            print(f"[{time.perf_counter() - started:4.0f} s] {name}", file=sys.stderr, flush=True)
            argv = [*data[name], "--device", options.device, "--no_progress", "--output_dir", str(work / "runs")]
            costs.append(measure_steps(SCRIPTS[name], argv, plan, modes))
    device = resolve_device(options.device, "0")
    print(f"\n== step cost: {'quick' if options.quick else 'default'} plan, device {device}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, "
          f"{plan.rounds} rounds ==")
    print("synthetic data, --lam 0; students of the real architectures at random init\n")
    report(costs)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
