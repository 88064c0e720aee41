"""A run: its folder, `n_times` seeded trials, `results.json` after each, and the summary line."""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
import transformers

from utils.experiment import Experiment
from utils.run_folder import RunLog, git_commit, make_run_dir, write_json_atomically
from utils.train import train_trial
from utils.trial import Trials


def run_experiment(experiment: Experiment, args: argparse.Namespace) -> dict:
    """Run `args.n_times` trials with seeds random_seed + k; return the final results."""
    run_dir = make_run_dir(args.output_dir, args.script, args.random_seed)
    log = RunLog(run_dir / "log.txt")
    log(f"Run folder: {run_dir}")
    arguments = {**vars(args), "feature_dim": experiment.feature_dim, "argv": sys.argv, "git_commit": git_commit()}
    write_json_atomically(arguments, run_dir / "args.json")
    trials = Trials(experiment, args)
    teacher = experiment.teacher.source.as_dict() if experiment.teacher is not None else None
    results = {"experiment": experiment.tag, "teacher": teacher,
               "trials": [], "summary": None,
               "environment": {"torch": torch.__version__, "transformers": transformers.__version__,
                               "device": str(trials.device)}}
    for k in range(args.n_times):
        seed = args.random_seed + k
        trial_dir = run_dir / f"trial{k}"
        trial_dir.mkdir()
        log(f"Trial {k + 1}/{args.n_times} (seed {seed})")
        setup = trials.build(seed, trial_dir)
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
