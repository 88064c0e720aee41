"""Summarise run folders: `python -m utils.report PATH... [--csv FILE] [--json FILE] [--plots DIR]`.

PATH... are run folders (a folder with `args.json`) or folders that hold them, searched recursively.
Runs are grouped by `results.json["experiment"]` and every option in `args.json` except
`IGNORED_OPTIONS` (those cannot change the numbers); the trials of runs that differ only in seed pool
into one group. Each trial is identified by its seed; a seed found in two runs of a group counts once
(the first run folder in sorted order wins, a note says so). A run that has no readable
`results.json`, fewer finished trials than `n_times`, or `"complete": false` is listed with the reason
and is left out of every number, its finished trials included.

Every file is checked before it is used: a value the report uses that is not what the scripts write (see
`check_args`, `check_trial`, `read_metrics`), or a trial whose metrics.csv does not hold one row per epoch
1..`epochs`, makes the run broken, with a one-line reason naming the file.

Printed on stdout as Markdown: the groups (mean ± population std, ddof 0, in percent), the paired
differences of each lam > 0 group to the lam-0 group with otherwise equal options on their shared
seeds (mean, 95 % Student-t confidence interval, paired t-test, wins/ties/losses, in percentage
points), and the unfinished or broken runs.

`--json FILE` writes (accuracies and differences as fractions, as in results.json):
    distinguishing   the option names shown as columns: lam and every option that differs among the
                     groups of one experiment
    groups[]         experiment, settings (every option that can change the numbers), runs (folders),
                     seeds, n, best_epochs (in seed order), test: {"acc", "uar", "macro_f1"}, each
                     {"mean", "std", "values"} (values in seed order) or null when the trials lack it
    comparisons[]    experiment, settings (the lam > 0 group's), lam, baseline_lam (0), seeds (shared),
                     differences (lam group minus lam 0, in seed order), mean, ci95 ([low, high] or
                     null when n < 2), t, p (null when n < 2 or the differences do not vary),
                     wins, ties, losses
    skipped[]        run, reason: the unfinished or broken runs
    notes[]          duplicate seeds, lam > 0 groups whose baseline shares no seed
`--csv FILE` writes one row per group (kind "group") and per comparison (kind "comparison"), columns:
    kind, experiment, the distinguishing options, n, seeds (space-separated), acc_mean, acc_std,
    uar_mean, uar_std, macro_f1_mean, macro_f1_std, best_epochs (space-separated), diff_mean, ci_low,
    ci_high, t, p, wins, ties, losses; fractions; a cell that does not apply is empty.
`--plots DIR` (needs matplotlib) writes `curves_<script>_<run folder>.png` per run (train and
validation cls loss and accuracy per epoch, every trial) and, per lam sweep (groups that differ only in
lam, ≥ 2 values), `sweep_curves_<script>.png` (validation accuracy, validation and train cls loss per
epoch of each group: the mean over seeds and a min-max band, a bar for one epoch; lam 0 in black) and
`paired_differences_<script>.png` (each seed's test-accuracy difference to lam 0, and the comparison
table's mean and 95 % interval); a second sweep of a script gets `_2`, and so on.

Bad input (a missing path, no run folder found, a tree too deep to search) exits 2 with a last stderr
line `report: error: ...`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import reprlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from scipy import stats

from utils.experiment import InputError

# args.json keys that cannot change a run's numbers: the seed and trial count (seeds are what is
# paired), where things are written or cached, how fast or on which device it runs, and records.
IGNORED_OPTIONS = frozenset({
    "random_seed", "n_times", "output_dir", "num_workers", "no_progress", "device", "gpu_ids", "cache_dir",
    "teacher_cache", "demo_dir", "version", "argv", "git_commit", "resume", "eval_only", "script", "deterministic",
    "processes", "resumed", "run_name", "tensorboard", "compile",
})
METRICS = ("acc", "uar", "macro_f1")  # test metrics summarised per group; uar and macro_f1 are IEMOCAP's
METRIC_HEADERS = {"acc": "test acc %", "uar": "UAR %", "macro_f1": "macro-F1 %"}
EQUAL = 1e-12  # accuracies equal up to float rounding count as a tie / as no variation
# The header utils/loop.py writes (not imported from there: it needs torch).
METRICS_COLUMNS = ("epoch", "lr", "train_cls", "train_latent", "train_acc", "val_cls", "val_latent", "val_acc",
                   "train_seconds", "epoch_seconds")


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


def read_json(path: Path) -> Any:
    """The parsed file; a missing or unreadable file raises ValueError with a short reason."""
    if not path.is_file():
        raise ValueError(f"no {path.name}")
    try:
        return json.loads(path.read_text())
    # ValueError: not UTF-8 or JSON, or an integer of over 4300 digits; RecursionError: nested thousands deep
    except (OSError, ValueError, RecursionError) as error:
        raise ValueError(f"unreadable {path.name}: {error}") from None


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
    """record[name] if record is an object and valid(record[name]); else ValueError saying which and why."""
    if not isinstance(record, dict):
        raise ValueError(f"{where} is {reprlib.repr(record)}; expected an object")
    if name not in record:
        raise ValueError(f"{where} has no {name}; expected {expected}")
    if not valid(record[name]):
        raise ValueError(f"{where} {name} is {reprlib.repr(record[name])}; expected {expected}")
    return record[name]


def check_args(args: Any) -> None:
    """The args.json values the report uses, and every option it groups on."""
    checked(args, "lam", is_fraction, "a number from 0 to 1", "args.json")
    checked(args, "n_times", is_count, "an integer >= 1", "args.json")
    checked(args, "epochs", is_count, "an integer >= 1", "args.json")
    checked(args, "random_seed", is_integer, "an integer", "args.json")
    checked(args, "script", is_name, "a script name", "args.json")
    for name in args:
        if name not in IGNORED_OPTIONS:
            checked(args, name, is_scalar, "a string, number, bool or null", "args.json")


def check_trial(trial: Any, k: int, epochs: int) -> None:
    """trials[k] of a results.json: its place, seed, best epoch and test metrics as the scripts write them."""
    where = f"results.json trials[{k}]"
    if checked(trial, "trial", is_integer, f"{k}", where) != k:
        raise ValueError(f"{where} trial is {trial['trial']}; expected {k}, its place in the list")
    checked(trial, "seed", is_integer, "an integer", where)
    if checked(trial, "best_epoch", is_count, "an integer >= 1", where) > epochs:
        raise ValueError(f"{where} best_epoch is {trial['best_epoch']}; expected at most {epochs} (args.json epochs)")
    test = trial.get("test")
    for metric in METRICS:  # acc first: checking it rejects a test that is not an object
        if metric == "acc" or metric in test:  # uar and macro_f1 are IEMOCAP's
            checked(test, metric, is_fraction, "a number from 0 to 1", f"{where} test")


def metrics_cell(cell: str, column: str, lam: float, where: str) -> float | None:
    """A metrics.csv cell as a finite number; the latent cells are empty without a teacher (lam 0)."""
    if cell == "" and lam == 0 and column.endswith("_latent"):
        return None
    try:
        number = float(cell)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"{where} {column} is {reprlib.repr(cell)}; expected a finite number")
    return number


def read_metrics(path: Path, epochs: int, lam: float) -> dict[str, tuple[float | None, ...]]:
    """The columns of a trialK/metrics.csv: the scripts' header, then one row per epoch 1..epochs."""
    where = f"{path.parent.name}/{path.name}"
    if not path.is_file():  # also keeps open() from waiting on a FIFO
        raise ValueError(f"no {where}; expected one row per epoch")
    rows = []
    try:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            if tuple(next(reader, ())) != METRICS_COLUMNS:
                raise ValueError(f"{where} does not start with the header {','.join(METRICS_COLUMNS)}")
            for epoch, row in enumerate(reader, 1):
                if len(row) != len(METRICS_COLUMNS) or row[0] != str(epoch):
                    raise ValueError(f"{where} row {epoch} is {reprlib.repr(','.join(row))}; expected epoch "
                                     f"{epoch} and {len(METRICS_COLUMNS)} cells")
                rows.append(tuple(metrics_cell(cell, column, lam, f"{where} row {epoch}")
                                  for column, cell in zip(METRICS_COLUMNS, row)))
    except (OSError, UnicodeDecodeError, csv.Error) as error:  # csv.Error: a field over the csv module's limit
        raise ValueError(f"unreadable {where}: {error}") from None
    if len(rows) != epochs:
        raise ValueError(f"{path.parent.name} trained {len(rows)} epoch{'s' * (len(rows) != 1)} ({where}), the run "
                         f"records {epochs} (args.json epochs)")
    return dict(zip(METRICS_COLUMNS, zip(*rows)))


def load_run(folder: Path) -> Run:
    """A finished run whose files hold what the scripts write; ValueError with the reason otherwise."""
    args, results = read_json(folder / "args.json"), read_json(folder / "results.json")
    check_args(args)
    experiment = checked(results, "experiment", is_line, "a one-line string", "results.json")
    trials, summary = results.get("trials"), results.get("summary")
    complete = results.get("complete", True)  # no flag: the trial count decides
    if not isinstance(trials, list):
        raise ValueError(f"results.json trials is {reprlib.repr(trials)}; expected a list")
    if not isinstance(summary, (dict, type(None))):
        raise ValueError(f"results.json summary is {reprlib.repr(summary)}; expected an object or null")
    if not isinstance(complete, bool):
        raise ValueError(f"results.json complete is {reprlib.repr(complete)}; expected true or false")
    finished, wanted = len(trials), args["n_times"]
    if not complete:
        raise ValueError(f'results.json says "complete": false ({finished} of {wanted} trials finished)')
    if finished < wanted:
        raise ValueError(f"{finished} of {wanted} trials finished")
    if finished > wanted:
        raise ValueError(f"results.json has {finished} trials; expected {wanted} (args.json n_times)")
    for k, trial in enumerate(trials):
        check_trial(trial, k, args["epochs"])
    if len({trial["seed"] for trial in trials}) < finished:  # pooling by seed would drop a trial unnoticed
        raise ValueError("results.json repeats a seed; expected one seed per trial")
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
        settings = {name: value for name, value in sorted(run.args.items()) if name not in IGNORED_OPTIONS}
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
        except ValueError as error:
            skipped.append({"run": str(folder), "reason": str(error)})
    groups = group_runs(runs, notes)
    comparisons = compare_to_baselines(groups, notes)
    report = {"distinguishing": distinguishing_options(groups), "groups": [group_record(group) for group in groups],
              "comparisons": comparisons, "skipped": skipped, "notes": notes}
    return report, runs, groups


def show(value: Any) -> str:
    return "-" if value is None else str(value)


def joined(values: list[Any]) -> str:
    return " ".join(map(show, values))


def percent(value: float | None, signed: bool = False) -> str:
    return "n/a" if value is None else f"{100 * value:{'+' if signed else ''}.2f}"


def interval(ci95: list[float] | None) -> str:
    return "n/a" if ci95 is None else f"[{percent(ci95[0], signed=True)}, {percent(ci95[1], signed=True)}]"


def mean_std(stat: dict[str, Any] | None) -> str:
    return "-" if stat is None else f"{percent(stat['mean'])} ± {percent(stat['std'])}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def groups_markdown(records: list[dict[str, Any]], options: list[str]) -> str:
    # UAR and macro-F1 columns only when some group has them
    metrics = METRICS if any(record["test"]["uar"] for record in records) else ("acc",)
    header = ["experiment", *options, "trials", "seeds", *(METRIC_HEADERS[metric] for metric in metrics), "best epochs"]
    rows = [[record["experiment"], *(show(record["settings"].get(name)) for name in options), str(record["n"]),
             joined(record["seeds"]), *(mean_std(record["test"][metric]) for metric in metrics),
             ", ".join(map(show, record["best_epochs"]))] for record in records]
    return markdown_table(header, rows)


def comparisons_markdown(records: list[dict[str, Any]], options: list[str]) -> str:
    if not records:
        return "No lam > 0 group has a lam-0 group with otherwise equal options and shared seeds."
    header = ["experiment", *options, "seeds", "mean diff (pp)", "95 % CI (pp)", "t", "p", "wins/ties/losses"]
    rows = [[record["experiment"], *(show(record["settings"].get(name)) for name in options),
             joined(record["seeds"]), percent(record["mean"], signed=True), interval(record["ci95"]),
             "n/a" if record["t"] is None else f"{record['t']:.3f}",
             "n/a" if record["p"] is None else f"{record['p']:.4g}",
             f"{record['wins']}/{record['ties']}/{record['losses']}"] for record in records]
    return (markdown_table(header, rows) + "\n\nDifferences are the lam group minus lam 0 on the same seeds, "
            "in percentage points of test accuracy; p from a two-sided paired t-test.")


def report_markdown(report: dict[str, Any]) -> str:
    options = report["distinguishing"]
    skipped = [f"- {item['run']}: {item['reason']}" for item in report["skipped"]]
    sections = ["## Groups", groups_markdown(report["groups"], options),
                "## Paired differences to lam 0", comparisons_markdown(report["comparisons"], options),
                "## Unfinished or broken runs (left out)", "\n".join(skipped) or "None."]
    if report["notes"]:
        sections += ["## Notes", "\n".join(f"- {note}" for note in report["notes"])]
    return "\n\n".join(sections)


def write_csv(report: dict[str, Any], path: Path) -> None:
    """Groups and comparisons as flat rows; see the module docstring for the columns."""
    columns = ["kind", "experiment", *report["distinguishing"], "n", "seeds",
               *(f"{metric}_{stat}" for metric in METRICS for stat in ("mean", "std")), "best_epochs",
               "diff_mean", "ci_low", "ci_high", "t", "p", "wins", "ties", "losses"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for record in report["groups"]:
            stat_cells = {f"{metric}_{stat}": (record["test"][metric] or {}).get(stat)
                          for metric in METRICS for stat in ("mean", "std")}
            writer.writerow({"kind": "group", "experiment": record["experiment"], **record["settings"],
                             "n": record["n"], "seeds": joined(record["seeds"]), **stat_cells,
                             "best_epochs": joined(record["best_epochs"])})
        for record in report["comparisons"]:
            low, high = record["ci95"] or (None, None)
            writer.writerow({"kind": "comparison", "experiment": record["experiment"], **record["settings"],
                             "n": len(record["seeds"]), "seeds": joined(record["seeds"]), "diff_mean": record["mean"],
                             "ci_low": low, "ci_high": high, "t": record["t"], "p": record["p"],
                             "wins": record["wins"], "ties": record["ties"], "losses": record["losses"]})


def save(plt: Any, figure: Any, directory: Path, stem: str, written: list[Path]) -> None:
    """directory/stem.png, or stem_2.png ... when this report already wrote that name."""
    path, k = directory / f"{stem}.png", 2
    while path in written:
        path, k = directory / f"{stem}_{k}.png", k + 1
    figure.savefig(path, dpi=100)
    plt.close(figure)
    written.append(path)


def epoch_axes(plt: Any, panels: Sequence[Any], epochs: int) -> None:
    """Whole-number epoch ticks; half an epoch of margin so that a one-epoch run sits inside the axes."""
    for axes in panels:
        axes.set(xlabel="epoch", xlim=(0.5, epochs + 0.5))
        axes.xaxis.set_major_locator(plt.MaxNLocator(integer=True, min_n_ticks=1))


def plot_curves(plt: Any, run: Run) -> Any:
    """Loss and accuracy per epoch of every trial of a run."""
    figure, panels = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for k, trial in enumerate(run.trials):
        for split, style in (("train", "-o"), ("val", "--s")):
            for axes, column, scale in zip(panels, ("cls", "acc"), (1, 100)):
                axes.plot(trial["curves"]["epoch"], scale * np.array(trial["curves"][f"{split}_{column}"]), style,
                          color=f"C{k}", markersize=4, label=f"seed {trial['seed']} {split}")
    panels[0].set(ylabel="cls loss", title=f"{run.experiment}, lam {run.args['lam']}")
    panels[1].set(ylabel="accuracy %", title=run.folder.name)
    panels[1].legend(fontsize="small")
    epoch_axes(plt, panels, run.args["epochs"])
    return figure


# The panels of a sweep's curves: metrics.csv column, axis label, scale (accuracies in percent).
SWEEP_PANELS = (("val_acc", "validation accuracy %", 100), ("val_cls", "validation cls loss", 1),
                ("train_cls", "train cls loss", 1))


def plot_sweep_curves(plt: Any, sweep: list[Group]) -> Any:
    """Per lam group and epoch, the mean over its seeds and the range from min to max; lam 0 in black."""
    epochs = np.arange(1, sweep[0].settings["epochs"] + 1)
    figure, panels = plt.subplots(1, len(SWEEP_PANELS), figsize=(15, 4.5), layout="constrained")
    for k, group in enumerate(sweep):
        color, style, role = ("black", "--s", " (baseline)") if group.lam == 0 else (f"C{k}", "-o", "")
        label = f"lam {group.lam:g}{role}, {len(group.trials)} seeds"
        for axes, (column, ylabel, scale) in zip(panels, SWEEP_PANELS):
            values = scale * np.array([trial["curves"][column] for trial in group.trials.values()])
            mean, low, high = values.mean(axis=0), values.min(axis=0), values.max(axis=0)
            if len(epochs) == 1:  # no band through one epoch: a bar per group, side by side
                error = np.clip([mean - low, high - mean], 0, None)  # the mean of equal floats can pass them
                axes.errorbar(epochs + 0.08 * (k - (len(sweep) - 1) / 2), mean, error, fmt=style[-1], color=color,
                              capsize=4, label=label)
            else:
                axes.fill_between(epochs, low, high, color=color, alpha=0.15)
                axes.plot(epochs, mean, style, color=color, markersize=4, label=label)
            axes.set(ylabel=ylabel)
    epoch_axes(plt, panels, len(epochs))
    figure.suptitle(f"{sweep[0].experiment}: mean over seeds and their range from min to max")
    figure.legend(*panels[0].get_legend_handles_labels(), loc="outside right upper", fontsize="small")
    return figure


def plot_paired_differences(plt: Any, comparisons: list[dict[str, Any]]) -> Any:
    """Per lam > 0, each seed's test-accuracy difference to lam 0, their mean and its 95 % t interval; the
    comparison table's numbers under each lam."""
    figure, axes = plt.subplots(figsize=(max(6.5, 1 + 1.8 * len(comparisons)), 4.5), layout="constrained")
    for x, record in enumerate(comparisons):
        differences, mean, ci95 = 100 * np.array(record["differences"]), 100 * record["mean"], record["ci95"]
        spread = np.linspace(-0.06, 0.06, len(differences))  # tied seeds side by side, not on one point
        axes.plot(x - 0.12 + spread, differences, "o", color="C0", alpha=0.7, label=None if x else "one seed")
        axes.errorbar(x + 0.12, mean, None if ci95 is None else [[mean - 100 * ci95[0]], [100 * ci95[1] - mean]],
                      fmt="D", color="black", capsize=6, label=None if x else "mean, 95 % t interval")
    axes.axhline(0, color="grey", linestyle=":", label="no difference")
    axes.set_xticks(range(len(comparisons)), [f"lam {record['lam']:g}\n{percent(record['mean'], signed=True)} "
                                              f"{interval(record['ci95'])}" for record in comparisons])
    axes.set(xlim=(-0.5, len(comparisons) - 0.5), ylabel="test accuracy minus lam 0 (pp)",
             title=f"{comparisons[0]['experiment']}: lam group minus lam 0, paired by seed")
    axes.legend(fontsize="small")
    return figure


def write_plots(runs: list[Run], groups: list[Group], comparisons: list[dict[str, Any]],
                directory: Path) -> list[Path]:
    """The PNGs of --plots; matplotlib is imported only here so the report runs without it."""
    try:
        import matplotlib
    except ImportError:
        raise InputError("--plots needs matplotlib (pip install -r requirements.txt)") from None
    matplotlib.use("Agg")  # headless: no display on servers and CI
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for run in runs:
        save(plt, plot_curves(plt, run), directory, f"curves_{run.args['script']}_{run.folder.name}", written)
    sweeps: dict[tuple[str, str], list[Group]] = {}
    for group in groups:  # in sweep_order: a sweep's groups by lam
        sweeps.setdefault(sweep_order(group)[:2], []).append(group)
    for sweep in sweeps.values():
        script = sweep[0].runs[0].args["script"]
        keys = {group_key(group.experiment, group.settings) for group in sweep}
        paired = [record for record in comparisons if group_key(record["experiment"], record["settings"]) in keys]
        if len(sweep) >= 2:
            save(plt, plot_sweep_curves(plt, sweep), directory, f"sweep_curves_{script}", written)
        if paired:  # a lam-0 group that shares seeds with a lam > 0 group
            save(plt, plot_paired_differences(plt, paired), directory, f"paired_differences_{script}", written)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="report", usage="python -m utils.report PATH... [options]",
                                     description="Group run folders by settings; mean ± std and paired "
                                                 "differences to lam 0 as Markdown on stdout.")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="run folders or folders that hold them")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="also write groups and comparisons as CSV")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the whole report as JSON")
    parser.add_argument("--plots", type=Path, metavar="DIR", help="write learning curves and lam sweeps as PNGs")
    args = parser.parse_args(argv)
    try:
        report, runs, groups = build_report(args.paths)
        print(report_markdown(report))
        if args.json:
            args.json.write_text(json.dumps(report, indent=2) + "\n")
        if args.csv:
            write_csv(report, args.csv)
        if args.plots:
            written = write_plots(runs, groups, report["comparisons"], args.plots)
            print("\n## Plots\n\n" + ("\n".join(f"- {path}" for path in written) or "None."))
    except InputError as error:
        print(f"report: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # mostly --csv, --json or --plots not writable
        print(f"report: error: {error.strerror or error}: {error.filename}; expected readable run folders and "
              "writable --csv, --json and --plots paths", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
