"""A run: its folder, `n_times` seeded trials, `results.json` after each, and the summary line.

With `--resume RUN_DIR` the run continues in its folder: finished trials are kept, an unfinished one
continues after its last completed epoch (utils/train_state.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import transformers

from utils.atomic import remove_stale_temporaries, write_json_atomically
from utils.distributed import from_main, is_main, world_size
from utils.errors import InputError
from utils.experiment import Experiment
from utils.run_folder import RunLog, git_commit, make_run_dir
from utils.train import train_trial
from utils.train_state import STATE_FILE, load_training_state
from utils.trial import Trials


def run_experiment(experiment: Experiment, args: argparse.Namespace) -> dict:
    """Run (or resume) `args.n_times` trials with seeds random_seed + k; return the final results."""
    if args.resume:
        run_dir = Path(args.resume)
    else:  # one folder for the run, however many processes
        made = make_run_dir(args.output_dir, args.script, f"seed{args.random_seed}") if is_main() else None
        run_dir = from_main(made)
    log = RunLog(run_dir / "log.txt")
    log(f"Run folder: {run_dir}")
    results = _resumed_results(run_dir) if args.resume else None
    _write_args(experiment, args, run_dir)
    trials = Trials(experiment, args)
    if results is None:
        teacher = experiment.teacher.source.as_dict() if experiment.teacher is not None else None
        results = {"experiment": experiment.tag, "teacher": teacher, "trials": [], "summary": None,
                   "complete": False,
                   "environment": {"torch": torch.__version__, "transformers": transformers.__version__,
                                   "device": str(trials.device)}}
        write_json_atomically(results, run_dir / "results.json")
    try:
        for k in range(args.n_times):
            seed = args.random_seed + k
            if k < len(results["trials"]):
                log(f"Trial {k + 1}/{args.n_times} (seed {seed}) finished before; kept")
                continue
            trial_dir = run_dir / f"trial{k}"
            if is_main():
                trial_dir.mkdir(exist_ok=True)
                remove_stale_temporaries(trial_dir)
            state = trial_dir / STATE_FILE
            resume = load_training_state(state) if args.resume and state.is_file() else None
            log(f"Trial {k + 1}/{args.n_times} (seed {seed})"
                + (f", resumed after epoch {resume['progress']['epoch']}" if resume else ""))
            setup = trials.build(seed, trial_dir)
            record = train_trial(setup, args.epochs, trial_dir, log, progress=not args.no_progress, resume=resume)
            results["trials"].append({"trial": k, "seed": seed, **record})
            results["summary"] = summarise(results["trials"])
            results["complete"] = len(results["trials"]) == args.n_times
            write_json_atomically(results, run_dir / "results.json")
            if is_main():
                state.unlink(missing_ok=True)  # the trial is in results.json: nothing left to resume
    except KeyboardInterrupt:
        if is_main():
            print(f"interrupted: continue with --resume {run_dir}", file=sys.stderr)
        raise
    summary = results["summary"]
    log(f"Overall test acc: {100 * summary['test_acc_mean']:.2f} ± {100 * summary['test_acc_std']:.2f} "
        f"{experiment.tag}")
    return results


def summarise(trials: list[dict]) -> dict:
    """Mean and population standard deviation (ddof 0) of the trials' test accuracies."""
    accs = np.array([trial["test"]["acc"] for trial in trials])
    return {"test_acc_mean": float(accs.mean()), "test_acc_std": float(accs.std()), "n": len(accs)}


def _write_args(experiment: Experiment, args: argparse.Namespace, run_dir: Path) -> None:
    """args.json: every option, D, argv and git commit; a resumed run also lists its resumptions."""
    path = run_dir / "args.json"
    resumptions = json.loads(path.read_text()).get("resumed", []) if args.resume else []
    if args.resume:
        resumptions.append({"argv": sys.argv, "at": f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S}"})
    processes = {"world_size": world_size(), "backend": dist.get_backend() if dist.is_initialized() else None,
                 "batchnorm": "synchronised (SyncBatchNorm)" if world_size() > 1 else "per process"}
    arguments = {**vars(args), "feature_dim": experiment.feature_dim, "argv": sys.argv, "git_commit": git_commit(),
                 "processes": processes}
    write_json_atomically({**arguments, **({"resumed": resumptions} if args.resume else {})}, path)


def _resumed_results(run_dir: Path) -> dict | None:
    """The results.json of an interrupted run (None if it was stopped before writing one); its leftover
    temporary files are removed, never read."""
    if is_main():
        remove_stale_temporaries(run_dir)
    path = run_dir / "results.json"
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InputError(f"--resume {run_dir}: cannot read {path} ({type(error).__name__}); expected the "
                         "results.json this run wrote") from None
    if not isinstance(results, dict) or not isinstance(results.get("trials"), list):
        raise InputError(f"--resume {run_dir}: {path} holds no list of trials; expected the results.json "
                         "this run wrote")
    return results
