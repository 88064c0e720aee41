"""The files of a run folder and their formats: what each holds, and each read back as a stranger's input.

    <run>/args.json       every option, and the records of `RECORDS` (script, feature_dim, argv, ...)
    <run>/results.json    `RESULTS_FIELDS`: per trial `TRIAL_FIELDS`, each split's metrics; the summary
    <run>/log.txt         the stdout lines
    <run>/lock            the one writer's lock (utils/run_folder.py)
    <run>/trialK/split.json    {"train", "val", "test"} (`SPLITS`): the items of each split
    <run>/trialK/metrics.csv   `METRICS_COLUMNS`, one row per epoch
    <run>/trialK/best.pt, train_state.pt   the student's state_dict; the training state (utils/checkpoints.py)

The run writes them (utils/run.py, utils/loop.py); a resume, `--eval_only` and the report read them back through
the checks here, which name the file and what was expected. This module needs neither torch nor the project's
packages besides `utils.experiment`, so that `python -m utils.report` runs without them.
"""

from __future__ import annotations

import csv
import json
import math
import reprlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from utils.experiment import InputError

SPLITS = ("train", "val", "test")
METRICS_COLUMNS = ("epoch", "lr", "train_cls", "train_latent", "train_acc", "val_cls", "val_latent", "val_acc",
                   "train_seconds", "epoch_seconds")
LOCK_FILE = "lock"  # the one writer's lock; while held it names the holder's host and process id
BEST_FILE, STATE_FILE = "best.pt", "train_state.pt"
# What a run folder holds besides its trials, and what each trial folder holds, by kind.
RUN_FILES = ("args.json", "results.json", "log.txt", LOCK_FILE)
TRIAL_FILES = ("split.json", "metrics.csv", BEST_FILE, STATE_FILE)
TRIAL_FOLDERS = ("tensorboard",)
RESULTS_FIELDS = {"experiment", "teacher", "trials", "summary", "complete", "environment"}
TRIAL_FIELDS = {"trial", "seed", "best_epoch", "val", "test", "checkpoint"}

# The one rule of which options cannot change a run's numbers (beyond the rounding of another device or kernel):
# where it writes or caches, how it shows its progress, where and how fast it computes. A resume may give them anew;
# the report pools runs that differ only in them.
RESULT_FREE_OPTIONS = frozenset({"output_dir", "cache_dir", "demo_dir", "no_progress", "tensorboard", "num_workers",
                                 "device", "gpu_ids", "compile", "deterministic", "teacher_cache"})
# The options that name the run a command continues or evaluates, not what it computes.
RUN_ADDRESS_OPTIONS = frozenset({"resume", "eval_only", "run_name"})


def read_json(path: Path, expected: str) -> Any:
    """The parsed JSON file; InputError naming it and `expected` if it is missing, not UTF-8, not strict JSON
    (NaN and infinities are not: the run never writes them), or nested deeper than the parser recurses."""
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_not_json)
    except _NotStrictJson as error:
        raise InputError(f"cannot read {path} ({error} is not strict JSON); expected {expected}") from None
    except (OSError, ValueError, RecursionError) as error:  # ValueError: not UTF-8, or not JSON
        raise InputError(f"cannot read {path} ({type(error).__name__}); expected {expected}") from None


class _NotStrictJson(ValueError):
    """NaN, Infinity or -Infinity in a JSON file."""


def _not_json(constant: str) -> Any:
    raise _NotStrictJson(constant)


def read_split_file(path: str | Path, option: str = "--split_file") -> dict[str, list]:
    """The train, val and test lists of a trial's split.json (`option` names where it came from); an item may
    appear once in each list. Whether the items fit the data (and do not repeat across splits) is the data set's
    check."""
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError, RecursionError) as error:  # ValueError: not UTF-8, or not JSON
        raise InputError(f"cannot read {option} {path}: {error}; "
                         "expected the UTF-8 JSON split.json of an earlier trial") from None
    if not isinstance(record, dict) or not all(isinstance(record.get(name), list) for name in SPLITS):
        raise InputError(f"{option} {path} must hold lists 'train', 'val' and 'test'")
    for name in SPLITS:
        # JSON text as the key: items may be lists ([stem, label] pairs), which cannot be counted as they are.
        counts = Counter(json.dumps(item) for item in record[name])
        repeated = [(item, count) for item, count in counts.items() if count > 1]
        if repeated:
            item, count = repeated[0]
            raise InputError(f"{option} {path}: {item} appears {count} times in {name!r} "
                             f"({len(repeated)} repeated items); expected each item once")
    return {name: record[name] for name in SPLITS}


def _strings(value: Any) -> bool:
    return type(value) is list and all(type(item) is str for item in value)


def _commit(value: Any) -> bool:
    return value is None or type(value) is str


def _processes(value: Any) -> bool:
    return (isinstance(value, dict) and value.keys() == {"world_size", "backend", "batchnorm"}
            and type(value["world_size"]) is int and value["world_size"] >= 1
            and (value["backend"] is None or type(value["backend"]) is str) and type(value["batchnorm"]) is str)


def _resumptions(value: Any) -> bool:
    return type(value) is list and all(
        isinstance(entry, dict) and {"argv", "at"} <= entry.keys() <= {"argv", "git_commit", "at"}
        and _strings(entry["argv"]) and _commit(entry.get("git_commit")) and type(entry["at"]) is str
        for entry in value)


# The fields of args.json besides the options: what a run records there, and what each must be.
RECORDS = {
    "script": (lambda value: type(value) is str and value.isidentifier(), "the script's name"),
    "feature_dim": (lambda value: type(value) is int and value >= 1, "the teacher's feature size, an integer >= 1"),
    "argv": (_strings, "the command line that started the run, a list of strings"),
    "git_commit": (_commit, "a commit hash or null"),
    "processes": (_processes, 'an object {"world_size": an integer >= 1, "backend": a name or null, "batchnorm": '
                              'a description}'),
    "resumed": (_resumptions, 'a list of {"argv": [...], "git_commit": ..., "at": "time"}, one for each resume'),
}


def record_problem(name: str, value: Any) -> str | None:
    """What is wrong with the args.json record `name` (one of `RECORDS`), or None."""
    valid, expected = RECORDS[name]
    return None if valid(value) else f"{name} is {shown(value)}; expected {expected}"


def shown(value: Any) -> str:
    """A read-back value in a message: its JSON, cut short."""
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def summarise(trials: list[dict]) -> dict:
    """results.json's summary: mean and population standard deviation (ddof 0) of the trials' test accuracies."""
    accs = np.array([trial["test"]["acc"] for trial in trials])
    return {"test_acc_mean": float(accs.mean()), "test_acc_std": float(accs.std()), "n": len(accs)}


def overall_line(summary: dict, tag: str) -> str:
    """The last line of a run's stdout (and log.txt): the trials' mean test accuracy ± their population std."""
    return f"Overall test acc: {100 * summary['test_acc_mean']:.2f} ± {100 * summary['test_acc_std']:.2f} {tag}"


def results_problem(results: Any, tag: str, n_times: int, random_seed: int, epochs: int,
                    detailed: bool | None = None, num_classes: int | None = None) -> str | None:
    """What is wrong with a read-back results.json of a run of experiment `tag` with those options, or None: every
    field is as the run writes it. `detailed`: whether the experiment reports UAR, macro-F1 and a confusion matrix
    of `num_classes`; None (the report, which knows no experiment) takes each split's metrics at their word."""
    if not isinstance(results, dict) or results.get("experiment") != tag:
        return f"no experiment {tag!r}"
    if results.keys() != RESULTS_FIELDS:
        return f"its fields are {', '.join(sorted(results))}; expected {', '.join(sorted(RESULTS_FIELDS))}"
    if not isinstance(results["teacher"], (dict, type(None))) or not isinstance(results["environment"], dict):
        return "'teacher' is not an object (or null) or 'environment' not an object"
    trials = results["trials"]
    if not isinstance(trials, list) or len(trials) > n_times:
        return f"'trials' is not a list of at most {n_times} trials"
    if not isinstance(results["summary"], (dict, type(None))) or type(results["complete"]) is not bool:
        return "'summary' is not an object (or null) or 'complete' not true or false"
    for k, trial in enumerate(trials):
        if not isinstance(trial, dict) or type(trial.get("trial")) is not int or trial["trial"] != k or \
                type(trial.get("seed")) is not int or trial["seed"] != random_seed + k:
            return f"trial {k} is not the record of trial {k} with seed {random_seed + k}"
        if trial.keys() != TRIAL_FIELDS:
            return f"trial {k}'s fields are {', '.join(sorted(trial))}; expected {', '.join(sorted(TRIAL_FIELDS))}"
        best = trial["best_epoch"]
        if type(best) is not int or not 1 <= best <= epochs or not isinstance(trial["checkpoint"], str):
            return f"trial {k} has no best epoch in 1..{epochs} or no checkpoint"
        for split in ("val", "test"):
            problem = metrics_problem(trial[split], detailed, num_classes)
            if problem:
                return f"trial {k}'s {split} metrics: {problem}"
    if results["summary"] != (summarise(trials) if trials else None):
        return f"'summary' is not the summary of its {len(trials)} trial(s) (null for none)"
    if results["complete"] != (len(trials) == n_times):
        return f"'complete' is {str(results['complete']).lower()} with {len(trials)} of {n_times} trials"
    return None


def metrics_problem(metrics: Any, detailed: bool | None, num_classes: int | None) -> str | None:
    """What is wrong with one split's metrics as results.json holds them, or None (see `results_problem`)."""
    if not isinstance(metrics, dict):
        return "not an object"
    detailed = "confusion" in metrics if detailed is None else detailed
    fractions = ("acc", "uar", "macro_f1") if detailed else ("acc",)
    fields = {*fractions, "cls_loss", "latent_loss", *(("confusion",) if detailed else ())}
    if metrics.keys() != fields:
        return f"its fields are {', '.join(sorted(metrics))}; expected {', '.join(sorted(fields))}"
    for name in fractions:
        if not _number(metrics[name]) or not 0 <= metrics[name] <= 1:
            return f"{name} is not a fraction in [0, 1]"
    if not _number(metrics["cls_loss"]) or not (metrics["latent_loss"] is None or _number(metrics["latent_loss"])):
        return "cls_loss or latent_loss is not a finite number"
    if detailed and not _table_of_counts(metrics["confusion"], num_classes):
        return f"confusion is not a {num_classes or 'square'} x {num_classes or 'square'} table of counts"
    return None


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _table_of_counts(value: Any, size: int | None) -> bool:
    """A `size` x `size` (any size when None) list of lists of counts."""
    size = len(value) if size is None and type(value) is list else size
    return type(value) is list and len(value) == size and all(
        type(row) is list and len(row) == size and all(type(n) is int and n >= 0 for n in row) for row in value)


def read_metrics(path: Path, epochs: int, lam: float) -> dict[str, tuple[float | None, ...]]:
    """The columns of a trialK/metrics.csv: `METRICS_COLUMNS`, then one row per epoch 1..epochs of finite numbers
    (the latent cells are empty without a teacher, lam 0); InputError naming the file and the row otherwise."""
    where = f"{path.parent.name}/{path.name}"
    if not path.is_file():  # also keeps open() from waiting on a FIFO
        raise InputError(f"no {where}; expected one row per epoch")
    rows = []
    try:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            if tuple(next(reader, ())) != METRICS_COLUMNS:
                raise InputError(f"{where} does not start with the header {','.join(METRICS_COLUMNS)}")
            for epoch, row in enumerate(reader, 1):
                if len(row) != len(METRICS_COLUMNS) or row[0] != str(epoch):
                    raise InputError(f"{where} row {epoch} is {reprlib.repr(','.join(row))}; expected epoch "
                                     f"{epoch} and {len(METRICS_COLUMNS)} cells")
                rows.append(tuple(_metrics_cell(cell, column, lam, f"{where} row {epoch}")
                                  for column, cell in zip(METRICS_COLUMNS, row)))
    except (OSError, UnicodeDecodeError, csv.Error) as error:  # csv.Error: a field over the csv module's limit
        raise InputError(f"unreadable {where}: {error}") from None
    if len(rows) != epochs:
        raise InputError(f"{path.parent.name} trained {len(rows)} epoch{'s' * (len(rows) != 1)} ({where}), the run "
                         f"records {epochs} (args.json epochs)")
    return dict(zip(METRICS_COLUMNS, zip(*rows)))


def _metrics_cell(cell: str, column: str, lam: float, where: str) -> float | None:
    if cell == "" and lam == 0 and column.endswith("_latent"):
        return None
    try:
        number = float(cell)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise InputError(f"{where} {column} is {reprlib.repr(cell)}; expected a finite number")
    return number
