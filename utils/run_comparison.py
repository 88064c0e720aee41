"""Comparing finished runs: each run read back as the scripts write it (utils/run_files.py), runs grouped by their
experiment and every option that can change the numbers, the trials of a group pooled by seed, and each lam > 0
group paired seed by seed with the lam-0 group of otherwise equal options (`python -m utils.report` shows them).

A seed found in two runs of a group counts once (the first run folder in sorted order wins, a note says so). A run
that has no readable files, fewer finished trials than `n_times`, or a file that does not hold what the scripts
write (args.json, results.json, a trialK/metrics.csv without one row per epoch 1..`epochs`) is left out of every
number, its finished trials included, with a one-line reason.
"""

from __future__ import annotations

import json
import math
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from scipy import stats

from utils.experiment import InputError
from utils.run_files import (
    RECORDS,
    RESULT_FREE_OPTIONS,
    RUN_ADDRESS_OPTIONS,
    read_json,
    read_metrics,
    record_problem,
    results_problem,
)

# args.json entries by which runs are not told apart: those that cannot change the numbers, the records, the
# trial count and the seed (trials are pooled and paired by their seeds), and free text.
POOLED = RESULT_FREE_OPTIONS | RUN_ADDRESS_OPTIONS | set(RECORDS) | {"random_seed", "n_times", "version"}
METRICS = ("acc", "uar", "macro_f1")  # test metrics summarised per group; uar and macro_f1 are IEMOCAP's
EQUAL = 1e-12  # accuracies equal up to float rounding count as a tie / as no variation


@dataclass
class Run:
    folder: Path
    args: dict[str, Any]
    experiment: str
    trials: list[dict[str, Any]]  # as in results.json, each with "curves": the columns of its metrics.csv


@dataclass
class Group:
    experiment: str
    settings: dict[str, Any]
    runs: list[Run] = field(default_factory=list)
    trials: dict[int, dict[str, Any]] = field(default_factory=dict)  # seed -> trial

    @property
    def lam(self) -> float:
        return float(self.settings["lam"])


def find_run_folders(paths: Sequence[str]) -> list[Path]:
    """Every folder with an args.json at or below the given paths, each once, sorted."""
    found: set[Path] = set()
    for name in paths:
        path = Path(name)
        if not path.exists():
            raise InputError(f"{name} does not exist; expected a run folder or a folder that holds run folders")
        try:
            found.update(args_file.parent.resolve() for args_file in path.rglob("args.json"))
        except RecursionError:  # pathlib searches a tree by recursion
            raise InputError(f"{name} nests folders too deep to search; expected run folders") from None
    if not found:
        raise InputError(f"no run folder (a folder with args.json) found under {' '.join(paths)}")
    return sorted(found)


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is no count


def is_count(value: Any) -> bool:
    return is_integer(value) and value >= 1


def is_fraction(value: Any) -> bool:
    return (is_integer(value) or isinstance(value, float)) and 0 <= value <= 1  # so never NaN or infinite


def is_line(value: Any) -> bool:
    return isinstance(value, str) and value.isprintable()  # prints on one line of the Markdown


def is_scalar(value: Any) -> bool:
    """What the scripts record for an option: a one-line string, a finite number, a bool or null."""
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, int) or is_line(value)  # int: bools too


def is_name(value: Any) -> bool:
    return isinstance(value, str) and value.isidentifier()  # part of the plots' file names: no "/" or ".."


def checked(record: Any, name: str, valid: Callable[[Any], bool], expected: str, where: str) -> Any:
    """record[name] if record is an object and valid(record[name]); else InputError saying which and why."""
    if not isinstance(record, dict):
        raise InputError(f"{where} is {reprlib.repr(record)}; expected an object")
    if name not in record:
        raise InputError(f"{where} has no {name}; expected {expected}")
    if not valid(record[name]):
        raise InputError(f"{where} {name} is {reprlib.repr(record[name])}; expected {expected}")
    return record[name]


def check_args(args: Any) -> None:
    """The args.json values the report uses, and every option it groups on."""
    checked(args, "lam", is_fraction, "a number from 0 to 1", "args.json")
    checked(args, "n_times", is_count, "an integer >= 1", "args.json")
    checked(args, "epochs", is_count, "an integer >= 1", "args.json")
    checked(args, "random_seed", is_integer, "an integer", "args.json")
    checked(args, "script", is_name, "a script name", "args.json")
    for name, value in args.items():
        problem = record_problem(name, value) if name in RECORDS else None
        if problem:
            raise InputError(f"args.json {problem}")
        if name not in POOLED:
            checked(args, name, is_scalar, "a string, number, bool or null", "args.json")


def load_run(folder: Path) -> Run:
    """A finished run whose files hold what the scripts write; InputError with the reason otherwise."""
    args = read_json(folder / "args.json", "the args.json a run wrote")
    check_args(args)
    results = read_json(folder / "results.json", "the results.json a run wrote")
    experiment = checked(results, "experiment", is_line, "a one-line string", "results.json")
    problem = results_problem(results, experiment, args["n_times"], args["random_seed"], args["epochs"])
    if problem:
        raise InputError(f"results.json: {problem}")
    finished, wanted = len(results["trials"]), args["n_times"]
    if finished < wanted:
        raise InputError(f"{finished} of {wanted} trials finished")
    trials = results["trials"]
    for k, trial in enumerate(trials):  # the curves travel with their trial, into its group too
        trial["curves"] = read_metrics(folder / f"trial{k}" / "metrics.csv", args["epochs"], args["lam"])
    return Run(folder, args, experiment, trials)


def group_key(experiment: str, settings: dict[str, Any]) -> str:
    return json.dumps([experiment, settings], sort_keys=True)


def sweep_order(group: Group) -> tuple[str, str, float]:
    """Experiment, the options but lam, lam: the groups of a lam sweep stand together, by lam."""
    return group.experiment, json.dumps({**group.settings, "lam": None}), group.lam


def group_runs(runs: list[Run], notes: list[str]) -> list[Group]:
    """Runs with equal experiment and settings pooled by seed; a repeated seed is kept once, with a note."""
    groups: dict[str, Group] = {}
    for run in runs:
        settings = {name: value for name, value in sorted(run.args.items()) if name not in POOLED}
        group = groups.setdefault(group_key(run.experiment, settings), Group(run.experiment, settings))
        group.runs.append(run)
        for trial in run.trials:
            kept = group.trials.setdefault(trial["seed"], {**trial, "run": run.folder})
            if kept["run"] != run.folder:
                notes.append(f"seed {trial['seed']} is in both {kept['run']} and {run.folder}; kept the first")
    return sorted(groups.values(), key=sweep_order)


def distinguishing_options(groups: list[Group]) -> list[str]:
    """lam, then every option whose value differs among the groups of one experiment."""
    differing: set[str] = set()
    for experiment in {group.experiment for group in groups}:
        settings = [group.settings for group in groups if group.experiment == experiment]
        names = set().union(*settings)
        differing.update(name for name in names if len({json.dumps(s.get(name)) for s in settings}) > 1)
    return ["lam", *sorted(differing - {"lam"})]


def group_record(group: Group) -> dict[str, Any]:
    """The group in seed order; a metric is null when a trial lacks it (AVMNIST has no uar)."""
    seeds = sorted(group.trials)
    trials = [group.trials[seed] for seed in seeds]
    test = {}
    for metric in METRICS:
        values = [trial["test"].get(metric) for trial in trials]
        test[metric] = None if None in values else {"mean": float(np.mean(values)), "std": float(np.std(values)),
                                                    "values": [float(value) for value in values]}
    return {"experiment": group.experiment, "settings": group.settings,
            "runs": [str(run.folder) for run in group.runs], "seeds": seeds, "n": len(seeds),
            "best_epochs": [trial["best_epoch"] for trial in trials], "test": test}


def paired_difference(group: Group, baseline: Group, seeds: list[int]) -> dict[str, Any]:
    """group minus baseline on the shared seeds, with a 95 % t interval and a paired t-test."""
    ours = np.array([group.trials[seed]["test"]["acc"] for seed in seeds], dtype=float)
    theirs = np.array([baseline.trials[seed]["test"]["acc"] for seed in seeds], dtype=float)
    differences = ours - theirs
    n, mean = len(seeds), float(differences.mean())
    ci95 = t = p = None
    if n >= 2:
        sd = float(differences.std(ddof=1))
        half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        ci95 = [mean - half, mean + half]
        if sd > EQUAL:  # constant differences make t infinite and p meaningless
            test = stats.ttest_rel(ours, theirs)
            t, p = float(test.statistic), float(test.pvalue)
    wins, losses = int(np.sum(differences > EQUAL)), int(np.sum(differences < -EQUAL))
    return {"experiment": group.experiment, "settings": group.settings, "lam": group.lam, "baseline_lam": 0.0,
            "seeds": seeds, "differences": differences.tolist(), "mean": mean, "ci95": ci95, "t": t, "p": p,
            "wins": wins, "ties": n - wins - losses, "losses": losses}


def compare_to_baselines(groups: list[Group], notes: list[str]) -> list[dict[str, Any]]:
    """Each lam > 0 group against the lam-0 group of the same experiment and otherwise equal options."""
    by_key = {group_key(group.experiment, group.settings): group for group in groups}
    comparisons = []
    for group in groups:
        baseline = by_key.get(group_key(group.experiment, {**group.settings, "lam": 0.0}))
        if group.lam == 0 or baseline is None:
            continue
        seeds = sorted(set(group.trials) & set(baseline.trials))
        if seeds:
            comparisons.append(paired_difference(group, baseline, seeds))
        else:
            notes.append(f"{group.experiment} lam {group.lam}: its lam-0 group shares no seed with it")
    return comparisons


def build_report(paths: Sequence[str]) -> tuple[dict[str, Any], list[Run], list[Group]]:
    """The report as JSON-able data, with the runs and groups it came from (for the plots)."""
    runs, skipped, notes = [], [], []
    for folder in find_run_folders(paths):
        try:
            runs.append(load_run(folder))
        except InputError as error:
            skipped.append({"run": str(folder), "reason": str(error)})
    groups = group_runs(runs, notes)
    comparisons = compare_to_baselines(groups, notes)
    report = {"distinguishing": distinguishing_options(groups), "groups": [group_record(group) for group in groups],
              "comparisons": comparisons, "skipped": skipped, "notes": notes}
    return report, runs, groups


def percent(value: float | None, signed: bool = False) -> str:
    return "n/a" if value is None else f"{100 * value:{'+' if signed else ''}.2f}"


def interval(ci95: list[float] | None) -> str:
    return "n/a" if ci95 is None else f"[{percent(ci95[0], signed=True)}, {percent(ci95[1], signed=True)}]"
