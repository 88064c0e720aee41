"""A run: its folder, `n_times` seeded trials, `results.json` after each, and the summary line."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import transformers
from torch import nn
from torch.utils.data import DataLoader

from datasets.pairing import PairedPartners
from utils.config import parse_args, resolve_device
from utils.errors import InputError
from utils.optim import build_optimizer, step_schedule, warmup_cosine_schedule
from utils.seed import batch_order_generator, partner_rng, set_seed, split_rng
from utils.teacher_features import InLoopTeacher, Teacher, TeacherFeatureCache, TeacherInputs
from utils.train import Split, TrialSetup, train_trial

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Experiment:
    """What a script wires together; `run_trials` does the rest."""

    tag: str  # e.g. "AVMNIST V->A"
    num_classes: int
    feature_dim: int  # D: the teacher's output size, whatever lam is
    draw_split: Callable[[np.random.Generator], dict[str, list]]  # a JSON-able split record
    build_splits: Callable[[dict[str, list]], dict[str, Split]]  # checks a record, e.g. from --split_file
    build_student: Callable[[], nn.Module]
    collate_for: Callable[[nn.Module], Callable[[list], Any]]  # the collate function for this student
    unpaired_partners: Callable[[Split, np.random.Generator], Any]  # the paper's training draws
    schedule: str  # "step" (AVMNIST) or "warmup_cosine" (IEMOCAP)
    teacher: Teacher | None = None  # None when lam = 0: no teacher is loaded
    teacher_inputs: TeacherInputs | None = None
    detailed_metrics: bool = False


class RunLog:
    """The stdout lines of a run, also appended to its log.txt."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.pending: list[str] = []

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        if self.path is None:
            self.pending.append(line)
            return
        with open(self.path, "a") as handle:
            handle.write(line + "\n")

    def attach(self, path: Path) -> None:
        self.path = path
        for line in self.pending:
            with open(path, "a") as handle:
                handle.write(line + "\n")
        self.pending = []


def exit_on_errors(script: str) -> Callable:
    """Turn the known failures into one stderr line and an exit code: 2 bad input, 1 diverged, 130 Ctrl-C."""

    def decorate(main: Callable[..., Any]) -> Callable[..., int]:
        @wraps(main)
        def wrapped(*args: Any, **kwargs: Any) -> int:
            try:
                main(*args, **kwargs)
            except KeyboardInterrupt:
                print(f"{script}: interrupted; results of finished trials are kept", file=sys.stderr)
                return 130
            except Exception as error:  # only our own error types carry an exit code
                code = getattr(error, "exit_code", None)
                if code is None:
                    raise
                print(f"{script}: error: {error}", file=sys.stderr)
                return code
            return 0

        return wrapped

    return decorate


def script_main(script: str, build_experiment: Callable[[argparse.Namespace], Experiment]
                ) -> Callable[[Sequence[str] | None], int]:
    """The `main(argv) -> exit code` of an entry script: parse its options, build its experiment, run."""

    @exit_on_errors(f"{script}.py")
    def main(argv: Sequence[str] | None = None) -> None:
        args = parse_args(script, argv)
        run_trials(build_experiment(args), args)

    return main


def make_run_dir(output_dir: str, script: str, seed: int) -> Path:
    """A new folder `output_dir/<script>/<YYYYmmdd-HHMMSS>_seed<seed>[_k]`, never an existing one."""
    parent = Path(output_dir) / script
    parent.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.datetime.now():%Y%m%d-%H%M%S}_seed{seed}"
    for suffix in ["", *(f"_{k}" for k in range(2, 10_000))]:
        try:
            (parent / (stem + suffix)).mkdir()
            return parent / (stem + suffix)
        except FileExistsError:
            continue
    raise InputError(f"could not create a new run folder under {parent}")


def write_json_atomically(data: Any, path: Path, indent: int | None = 2) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=indent)
        handle.write("\n")
    os.replace(tmp, path)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def load_split_file(path: str) -> dict[str, list]:
    try:
        with open(path) as handle:
            record = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read --split_file {path}: {error}; expected a split.json of an earlier trial") from None
    if not isinstance(record, dict) or not all(isinstance(record.get(k), list) for k in ("train", "val", "test")):
        raise InputError(f"--split_file {path} must hold lists 'train', 'val' and 'test'")
    return {name: record[name] for name in ("train", "val", "test")}


def teacher_source(experiment: Experiment, args: argparse.Namespace, device: torch.device):
    """The cache (default) or the in-loop teacher; None without a teacher."""
    if experiment.teacher is None:
        return None
    experiment.teacher.to(device)
    if args.teacher_cache == "off":
        return InLoopTeacher(experiment.teacher, experiment.teacher_inputs, device, AMP_DTYPES[args.amp])
    return TeacherFeatureCache(experiment.teacher, experiment.teacher_inputs, device, AMP_DTYPES[args.amp],
                               cache_dir=args.cache_dir, progress=not args.no_progress)


def build_trial(experiment: Experiment, args: argparse.Namespace, seed: int, device: torch.device,
                features, trial_dir: Path) -> TrialSetup:
    """Split, student, loaders, partners and optimizer of one trial, each from its own seeded stream."""
    record = load_split_file(args.split_file) if args.split_file else experiment.draw_split(split_rng(seed))
    if args.subset:
        record = {name: items[:args.subset] for name, items in record.items()}
    splits = experiment.build_splits(record)
    write_json_atomically({**record, "subset": args.subset, "seed": seed}, trial_dir / "split.json", indent=None)

    set_seed(seed, args.deterministic)  # right before the student: its init does not depend on lam
    student = experiment.build_student().to(device)
    if args.pairing == "paired":
        partners = PairedPartners(splits["train"].teacher_keys)
    else:
        partners = experiment.unpaired_partners(splits["train"], partner_rng(seed))
    if features is not None:
        features.prepare(np.concatenate([partners.possible_keys(), splits["val"].teacher_keys,
                                         splits["test"].teacher_keys]))
    collate = experiment.collate_for(student)
    loaders = {name: _loader(split, collate, args, device, train=name == "train", generator=batch_order_generator(seed))
               for name, split in splits.items()}
    optimizer = build_optimizer(args.optim, student.parameters(), args.learning_rate)
    if experiment.schedule == "step":
        scheduler = step_schedule(optimizer, args.lr_decay_step, args.lr_decay_ratio)
    else:
        scheduler = warmup_cosine_schedule(optimizer, args.warmup_epochs)
    return TrialSetup(student=student, loaders=loaders, splits=splits, partners=partners, optimizer=optimizer,
                      scheduler=scheduler, teacher_features=features, lam=args.lam, device=device,
                      amp_dtype=AMP_DTYPES[args.amp], num_classes=experiment.num_classes,
                      detailed_metrics=experiment.detailed_metrics)


def _loader(split: Split, collate: Callable, args: argparse.Namespace, device: torch.device, train: bool,
            generator: torch.Generator) -> DataLoader:
    return DataLoader(split.dataset, batch_size=args.batch_size, shuffle=train, generator=generator if train else None,
                      drop_last=train and len(split.dataset) > args.batch_size, collate_fn=collate,
                      num_workers=args.num_workers, persistent_workers=args.num_workers > 0,
                      pin_memory=device.type == "cuda")


def run_trials(experiment: Experiment, args: argparse.Namespace) -> dict:
    """Run `args.n_times` trials with seeds random_seed + k; return the final results."""
    device = resolve_device(args)
    log = RunLog()
    run_dir = make_run_dir(args.output_dir, args.script, args.random_seed)
    log.attach(run_dir / "log.txt")
    log(f"Run folder: {run_dir}")
    arguments = {**vars(args), "feature_dim": experiment.feature_dim, "argv": sys.argv, "git_commit": _git_commit()}
    write_json_atomically(arguments, run_dir / "args.json")
    features = teacher_source(experiment, args, device)
    teacher = experiment.teacher.source.as_dict() if experiment.teacher is not None else None
    results = {"experiment": experiment.tag, "teacher": teacher,
               "trials": [], "summary": None,
               "environment": {"torch": torch.__version__, "transformers": transformers.__version__,
                               "device": str(device)}}
    for k in range(args.n_times):
        seed = args.random_seed + k
        trial_dir = run_dir / f"trial{k}"
        trial_dir.mkdir()
        log(f"Trial {k + 1}/{args.n_times} (seed {seed})")
        setup = build_trial(experiment, args, seed, device, features, trial_dir)
        record = train_trial(setup, args.epochs, trial_dir, log, progress=not args.no_progress)
        results["trials"].append({"trial": k, "seed": seed, **record})
        results["summary"] = summarise(results["trials"])
        write_json_atomically(results, run_dir / "results.json")
    summary = results["summary"]
    log(f"Overall test acc: {100 * summary['test_acc_mean']:.2f} ± {100 * summary['test_acc_std']:.2f} "
        f"{experiment.tag}")
    return results


def summarise(trials: list[dict]) -> dict:
    """Mean and population standard deviation (ddof 0) of the trials' test accuracies."""
    accs = np.array([trial["test"]["acc"] for trial in trials])
    return {"test_acc_mean": float(accs.mean()), "test_acc_std": float(accs.std()), "n": len(accs)}
