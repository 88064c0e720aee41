"""What a training step costs each student, and what each way of taking it changes, measured side by side
(benchmarks/README.md says how, and what it found).

For each experiment (--only), on synthetic data in the real layouts, with the student of the real architecture at
random init and the README's batch size, trials are built as the scripts build them and each variant (--variants)
trains epochs of --steps steps, after WARM_UP_EPOCHS, in rounds whose order reverses every other round:

    eager          --lam 0: the step as the loop takes it (`run_epoch`: loader, copies, step, metrics)
    limit          the eager trial's forward, backward and optimizer step alone, on one batch already on the device
    compiled       --compile; its warm-up's time beyond as many timed epochs is its compile time
    checkpointing  --gradient_checkpointing (IEMOCAP)
    cache          --lam 0.3, a random teacher's features from the cache (built with the trial: its seconds shown)
    in_loop        --lam 0.3 --teacher_cache off: the teacher runs in every step
    ddp            under torchrun: a copy of the eager trial's student in DDP, LayerDrop off (every layer gets a
                   gradient, so DDP needs no search for unused parameters)
    ddp_search     the same with the search (find_unused_parameters)

On CUDA each trial but DDP's then trains an epoch and evaluates with every synchronising call an error: where the
first came from.

    HF_HUB_OFFLINE=1 python benchmarks/step_cost.py          # eager limit cache in_loop checkpointing
    HF_HUB_OFFLINE=1 python benchmarks/step_cost.py --variants eager compiled
    HF_HUB_OFFLINE=1 torchrun --standalone --nproc_per_node 2 benchmarks/step_cost.py --variants ddp ddp_search \\
        --only IEMOCAP_T2A --max_audio_seconds 2
    HF_HUB_OFFLINE=1 python benchmarks/step_cost.py --device cuda --steps 40 --rounds 3 --amp none bf16 fp16 \\
        --variants eager limit compiled checkpointing cache in_loop
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import dataclasses
import importlib
import itertools
import math
import re
import statistics
import sys
import tempfile
import time
import traceback
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Callable, Sequence

from common import EXPERIMENTS, ROOT, clock, data_options, machine, table, write_avmnist, write_iemocap

import torch  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

from datasets.avmnist import TRAIN_SHARE  # noqa: E402
from utils.device import autocast, on_device, resolve_device  # noqa: E402
from utils.distributed import ProcessGroup, is_main, launched, world_size  # noqa: E402
from utils.experiment import Batch  # noqa: E402
from utils.loop import optimizer_step, run_epoch  # noqa: E402
from utils.precise_bn import recompute_batchnorm_statistics  # noqa: E402
from utils.trial import Trial, TrialBuilder  # noqa: E402

VARIANTS = {"eager": [], "limit": [], "compiled": ["--compile"], "checkpointing": ["--gradient_checkpointing"],
            "cache": ["--lam", "0.3"], "in_loop": ["--lam", "0.3", "--teacher_cache", "off"], "ddp": [],
            "ddp_search": []}
OF_EAGER = ("limit", "ddp", "ddp_search")  # variants of the eager trial's student
STUDENTS = {"AVMNIST_V2A": "ResNet-18, 1x112x112", "AVMNIST_A2V": "ResNet-18, 1x28x28",
            "IEMOCAP_T2A": "wav2vec2-base, audio", "IEMOCAP_A2T": "BERT-base, text"}
# A compiled IEMOCAP student compiles for its first batch length, and again with dynamic shapes for a second one.
WARM_UP_EPOCHS = 2


def write_data(work: Path, steps: int) -> tuple[Path, Path]:
    """AVMNIST and IEMOCAP with `steps` training batches of the scripts' batch sizes and 80 items more, so that
    validation and test have an item for each of up to 8 processes."""
    v2a, a2t = importlib.import_module("AVMNIST_V2A"), importlib.import_module("IEMOCAP_A2T")
    avmnist = math.ceil(steps * v2a.DEFAULTS["batch_size"] / TRAIN_SHARE) + 80
    iemocap = math.ceil(steps * a2t.DEFAULTS["batch_size"] / a2t.SHARES[0]) + 80  # A->T trains on the smaller share
    return write_avmnist(work / "avmnist", avmnist, 80), write_iemocap(work / "iemocap", iemocap)


def build_trial(script: ModuleType, argv: list[str]) -> Trial:
    """The first trial of a run of `script` with `argv`, as the run builds it."""
    args = script.parse_args(argv)
    trials = TrialBuilder(script.build_experiment(args), args)
    return trials.build(args.random_seed, trials.split_record(args.random_seed))


def fixed_batch(trial: Trial) -> Batch:
    """A training batch of the split's first items, its tensors on the trial's device."""
    loader, dataset = trial.loaders["train"], trial.splits["train"].dataset
    batch = loader.collate_fn([dataset[i] for i in range(loader.batch_sampler.batch_size)])
    inputs = {name: on_device(value, trial.device) for name, value in batch.inputs.items()}
    return Batch(inputs, batch.labels.to(trial.device), batch.positions)


def limit_steps(trial: Trial, batch: Batch, steps: int) -> None:
    """`steps` training steps on `batch` as `run_epoch` takes them, without the loop around them (lam 0)."""
    trial.step_model.train()
    for _ in range(steps):
        with autocast(trial.device, trial.amp_dtype):
            logits, feature = trial.step_model(**batch.inputs)
        optimizer_step(trial, trial.objective(logits, batch.labels, feature, None).loss)


def ddp_copy(trial: Trial, search: bool) -> Trial:
    """`trial` with a copy of its student in DDP, with or without the search for unused parameters, and LayerDrop
    off: a step that skipped a layer fails without the search."""
    student = copy.deepcopy(trial.student)
    if student.skips_layers:
        student.wav2vec2.config.layerdrop = 0.0
    step_model = DistributedDataParallel(student, device_ids=[trial.device] if trial.device.type == "cuda" else None,
                                         broadcast_buffers=False, find_unused_parameters=search)
    optimizer = type(trial.optimizer)(student.parameters(), **trial.optimizer.defaults)
    return dataclasses.replace(trial, student=student, step_model=step_model, optimizer=optimizer)


def resident(field: str) -> int:
    """A memory figure of this process in bytes: VmRSS (resident now) or VmHWM (its high-water mark)."""
    return 1024 * int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def measured(work: Callable[[], object], device: torch.device) -> tuple[float, int]:
    """Seconds of `work`, and the most it added to memory: CUDA's allocated, or the resident set's high-water mark
    (Linux: /proc/self/clear_refs resets it) after glibc returned freed pages, which `work` could reuse unseen."""
    now = clock(device)
    if device.type == "cuda":
        now()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        ctypes.CDLL(None).malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        base = resident("VmRSS")
    start = now()
    work()
    seconds = now() - start
    return seconds, (torch.cuda.max_memory_allocated(device) if device.type == "cuda" else resident("VmHWM")) - base


def first_wait(work: Callable[[], object]) -> str:
    """Where `work`'s first synchronising CUDA call came from (its innermost frame outside torch), or "none"."""
    torch.cuda.set_sync_debug_mode("error")
    try:
        work()
    except Exception as error:
        cause = error.__cause__ or error  # run_epoch wraps an error of a step in its StageError
        if "synchroniz" not in str(cause):
            raise
        frames = [frame for frame in traceback.extract_tb(cause.__traceback__) if "/torch/" not in frame.filename]
        if not frames:
            return "torch"
        path = Path(frames[-1].filename)
        return f"{path.relative_to(ROOT) if ROOT in path.parents else path.name}:{frames[-1].name}"
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return "none"


def evaluate(trial: Trial) -> None:
    """What the loop does before it keeps a checkpoint: BatchNorm statistics where it has them, the validation."""
    if "precise_bn" in trial.loaders:
        recompute_batchnorm_statistics(trial.student, trial.loaders["precise_bn"], trial.device, trial.amp_dtype)
    run_epoch(trial, "val", "the check")


def measure(script: ModuleType, argv: list[str], variants: list[str], steps: int, rounds: int) -> list[list]:
    """Time `variants` of one experiment side by side; its table rows."""
    built, trials, works, notes = {}, {}, {}, {}  # built: a trial for each set of options; trials: each variant's
    for variant in variants:
        options = "eager" if variant in OF_EAGER else variant
        if options not in built:
            if options == "compiled":
                torch.compiler.reset()  # it compiles as in a new process (inductor's caches on disk stay)
            built[options] = build_trial(script, [*argv, *VARIANTS[options]])
        trial = trials[variant] = (ddp_copy(built[options], variant == "ddp_search") if variant.startswith("ddp")
                                   else built[options])
        works[variant] = (partial(limit_steps, trial, fixed_batch(trial), steps) if variant == "limit"
                          else partial(run_epoch, trial, "train", "a timed epoch"))
    warm_up = {variant: sum(measured(works[variant], trials[variant].device)[0] for _ in range(WARM_UP_EPOCHS))
               for variant in variants}
    seconds, peaks = {variant: [] for variant in variants}, {variant: [] for variant in variants}
    with torch.compiler.set_stance("fail_on_recompile"):  # a compile hidden in the timed rounds fails the benchmark
        for k in range(rounds):
            for variant in (variants if k % 2 == 0 else variants[::-1]):
                torch.manual_seed(k)
                took, peak = measured(works[variant], trials[variant].device)
                seconds[variant].append(took)
                peaks[variant].append(peak)
    if "compiled" in variants:  # its warm-up beyond as many timed epochs
        compiling = warm_up["compiled"] - WARM_UP_EPOCHS * statistics.median(seconds["compiled"])
        notes["compiled"] = f"compile {compiling:.1f} s"
    if "cache" in variants:
        notes["cache"] = f"cache built in {trials['cache'].teacher_features.build_seconds:.2f} s"
    for variant, trial in trials.items():  # not DDP's: one process's error there leaves the others in a collective
        if trial.device.type == "cuda" and variant not in OF_EAGER:
            waits = (f"first wait: training {first_wait(partial(run_epoch, trial, 'train', 'the check'))}, "
                     f"evaluation {first_wait(partial(evaluate, trial))}")
            notes[variant] = f"{notes[variant]}; {waits}" if variant in notes else waits
    rows = []
    for variant in variants:
        ratios = [first / own for first, own in zip(seconds[variants[0]], seconds[variant])]
        rows.append([variant, f"{statistics.median(steps / s for s in seconds[variant]):.3g}",
                     f"{statistics.median(ratios):.3f}", " ".join(f"{r:.2f}" for r in ratios),
                     f"{statistics.median(peaks[variant]) / 2**20:,.0f}", notes.get(variant, "")])
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (under torchrun: the local rank's GPU)")
    parser.add_argument("--only", nargs="+", choices=EXPERIMENTS, default=list(EXPERIMENTS), metavar="SCRIPT",
                        help=f"only these experiments ({', '.join(EXPERIMENTS)})")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                        default=["eager", "limit", "cache", "in_loop", "checkpointing"],
                        help="what to time, side by side; the first is what the others are compared with")
    parser.add_argument("--amp", nargs="+", choices=("none", "bf16", "fp16"), default=["none"])
    parser.add_argument("--steps", type=int, default=1, help="training steps a measurement")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--max_audio_seconds", type=float, default=0.5,
                        help="IEMOCAP: every utterance cut to this, so that nearly every batch has the limit's length")
    options = parser.parse_args(argv)
    if any(variant.startswith("ddp") for variant in options.variants) and not launched():
        parser.error("--variants ddp and ddp_search need torchrun (DDP needs a process group)")
    started = time.perf_counter()
    device = resolve_device(options.device, "0")
    rows = []
    with ProcessGroup("step_cost.py", device), tempfile.TemporaryDirectory(prefix="step_cost_") as tmp:
        avmnist, iemocap = write_data(Path(tmp), options.steps)
        for amp, name in itertools.product(options.amp, options.only):
            if is_main():
                print(f"[{time.perf_counter() - started:4.0f} s] {name}, --amp {amp}", file=sys.stderr, flush=True)
            script, iemocap_run = importlib.import_module(name), name.startswith("IEMOCAP")
            batch = script.DEFAULTS["batch_size"]
            run = [*data_options(name, avmnist, iemocap), "--subset", str(options.steps * batch), "--lam", "0",
                   "--device", options.device, "--amp", amp, "--no_progress", "--output_dir", f"{tmp}/runs"]
            run += ["--max_audio_seconds", str(options.max_audio_seconds)] if iemocap_run else []
            variants = [v for v in options.variants if v != "checkpointing" or iemocap_run]
            head = [script.TAG, STUDENTS[name], batch, amp]
            rows += [[*(head if i == 0 else [""] * len(head)), *row]
                     for i, row in enumerate(measure(script, run, variants, options.steps, options.rounds))]
        if is_main():
            print(f"\n== step cost on {device}: {options.steps} step(s) a measurement, {options.rounds} rounds, "
                  f"{world_size()} process(es) of {torch.get_num_threads()} thread(s) ==\n{machine()}\n")
            print(table(["experiment", "student", "batch", "amp", "variant", "steps/s", "vs first", "per round",
                         "peak + MiB", "note"], rows))
            print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
