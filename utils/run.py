"""A run: a script's entry and exit codes, `n_times` seeded trials in the run's folder with `results.json`
after each, the summary line, and `--eval_only` (each finished trial's checkpoint tested again).

With `--resume RUN_DIR` the run continues in its folder: finished trials are kept, an unfinished one
continues after its last completed epoch (utils/loop.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
import transformers

from utils.config import load_split_file
from utils.experiment import Experiment, InputError, NonFiniteLossError
from utils.loop import STATE_FILE, evaluate_checkpoint, load_training_state, train_trial
from utils.processes import Processes, from_main, is_main, launched, resolve_device, world_size
from utils.run_folder import RunLog, git_commit, make_run_dir, remove_stale_temporaries, write_json_atomically
from utils.trial import Trials


def run_script(script: str, parse_args: Callable[[Sequence[str] | None], argparse.Namespace],
               build_experiment: Callable[[argparse.Namespace], Experiment], argv: Sequence[str] | None) -> int:
    """Run a script's experiment; return 0, or 2 for bad input and 1 for a diverged trial (both print
    `<script>.py: error: <message>` as the last stderr line, no traceback), or 130 for Ctrl-C.
    Any other exception is a bug and keeps its traceback."""
    prog = f"{script}.py"
    try:
        args = parse_args(argv)
        with Processes(prog, resolve_device(args.device, args.gpu_ids)):  # several, under torchrun
            experiment = build_experiment(args)
            if args.eval_only:
                evaluate_run(experiment, args)
            else:
                run_experiment(experiment, args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; results of finished trials are kept", file=sys.stderr)
        return _ended(130)
    except (InputError, NonFiniteLossError) as error:
        print(f"{prog}: error: {one_line_message(error)}", file=sys.stderr)
        return _ended(error.exit_code)
    return 0


def _ended(code: int) -> int:
    """A process of several that failed leaves at once: shutting down its process group could wait for the
    others, which are stopping too (utils.processes.Processes)."""
    if launched():
        sys.stderr.flush()
        os._exit(code)
    return code


def one_line_message(error: Exception) -> str:
    """The error's own message. torch re-raises an error of a DataLoader worker as the same type with the
    worker's traceback as its message, whose last line is `<module>.<type>: <message>`: that message is kept."""
    text = str(error)
    if "Original Traceback" not in text:
        return text
    return text.rstrip().splitlines()[-1].removeprefix(f"{type(error).__module__}.{type(error).__qualname__}: ")


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
            trial = trials.build(seed, trial_dir)
            record = train_trial(trial, args.epochs, trial_dir, log, progress=not args.no_progress, resume=resume)
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
    _log_summary(log, results["summary"], experiment.tag)
    return results


def evaluate_run(experiment: Experiment, args: argparse.Namespace) -> dict:
    """`--eval_only RUN_DIR`: test every finished trial's best.pt of the run on that trial's recorded test split,
    with the run's options (args.json). The evaluation writes a folder of its own, `<output_dir>/<script>/
    <time>_eval` (log.txt, eval.json, each trial's split.json), and never touches the run's files. On the CPU
    the numbers equal the run's own test numbers exactly."""
    run_dir = Path(args.eval_only)
    finished = _finished_trials(run_dir)
    out_dir = from_main(make_run_dir(args.output_dir, args.script, "eval") if is_main() else None)
    log = RunLog(out_dir / "log.txt")
    log(f"Run folder: {out_dir}")
    log(f"Evaluating the checkpoints of {run_dir}")
    trials = Trials(experiment, args)
    results = {"experiment": experiment.tag, "evaluated_run": str(run_dir), "trials": [], "summary": None}
    for record in finished:
        k, seed = record["trial"], record["seed"]
        source, trial_dir = run_dir / f"trial{k}", out_dir / f"trial{k}"
        if is_main():
            trial_dir.mkdir()
        log(f"Trial {k + 1}/{len(finished)} (seed {seed}): {source / 'best.pt'}")
        trial = trials.build(seed, trial_dir, split=load_split_file(str(source / "split.json")), testing_only=True)
        test = evaluate_checkpoint(trial, source / "best.pt", log, progress=not args.no_progress)
        results["trials"].append({"trial": k, "seed": seed, "test": test, "checkpoint": str(source / "best.pt")})
    results["summary"] = summarise(results["trials"])
    write_json_atomically(results, out_dir / "eval.json")
    _log_summary(log, results["summary"], experiment.tag)
    return results


def summarise(trials: list[dict]) -> dict:
    """Mean and population standard deviation (ddof 0) of the trials' test accuracies."""
    accs = np.array([trial["test"]["acc"] for trial in trials])
    return {"test_acc_mean": float(accs.mean()), "test_acc_std": float(accs.std()), "n": len(accs)}


def _log_summary(log: RunLog, summary: dict, tag: str) -> None:
    log(f"Overall test acc: {100 * summary['test_acc_mean']:.2f} ± {100 * summary['test_acc_std']:.2f} {tag}")


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


def _finished_trials(run_dir: Path) -> list[dict]:
    path = run_dir / "results.json"
    try:
        trials = json.loads(path.read_text())["trials"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"--eval_only {run_dir}: cannot read the trials of {path} ({type(error).__name__}); "
                         "expected the results.json of a run with finished trials") from None
    if not trials:
        raise InputError(f"--eval_only {run_dir}: no trial of the run has finished; expected at least one best.pt")
    return trials
