"""Summarise run folders: `python -m utils.report PATH... [--csv FILE] [--json FILE] [--plots DIR]`.

PATH... are run folders (a folder with `args.json`) or folders that hold them, searched recursively.
Runs are grouped and compared as utils/run_comparison.py says; unfinished or broken runs are listed with the
reason and left out of every number. The plots: utils/report_plots.py.

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
`--plots DIR` (needs matplotlib) writes PNGs (utils/report_plots.py).

Bad input (a missing path, no run folder found, a tree too deep to search) exits 2 with a last stderr
line `report: error: ...`.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from utils.experiment import InputError
from utils.report_plots import write_plots
from utils.run_comparison import METRICS, build_report, interval, percent

METRIC_HEADERS = {"acc": "test acc %", "uar": "UAR %", "macro_f1": "macro-F1 %"}


def show(value: Any) -> str:
    return "-" if value is None else str(value)


def joined(values: list[Any]) -> str:
    return " ".join(map(show, values))


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
