"""`python -m utils.report --plots DIR`: PNGs of the runs and lam sweeps a report compares (matplotlib, imported only
here and only then, headless).

`curves_<script>_<run folder>.png` per run (train and validation cls loss and accuracy per epoch, every trial) and,
per lam sweep (groups that differ only in lam, >= 2 values), `sweep_curves_<script>.png` (validation accuracy,
validation and train cls loss per epoch of each group: the mean over seeds and a min-max band, a bar for one
epoch; lam 0 in black) and `paired_differences_<script>.png` (each seed's test-accuracy difference to lam 0, and
the comparison table's mean and 95 % interval); a second sweep of a script gets `_2`, and so on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from utils.experiment import InputError
from utils.run_comparison import Group, Run, group_key, interval, percent, sweep_order


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
