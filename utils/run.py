"""A run: a script's entry and exit codes, `n_times` seeded trials in the run's folder with `results.json`
after each, the summary line, and `--eval_only` (each finished trial's checkpoint tested again).

With `--resume RUN_DIR` the run continues in its folder: finished trials are kept, an unfinished one
continues after its last completed epoch (utils/loop.py).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import shutil
import sys
import tempfile
import traceback
from contextlib import ExitStack
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist

from utils.config import load_split_file
from utils.experiment import Experiment, InputError, NonFiniteLossError
from utils.loop import (
    STATE_FILE,
    Progress,
    StageError,
    evaluate_checkpoint,
    load_checkpoint,
    load_training_state,
    restore_training_state,
    train_trial,
)
from utils.processes import Processes, from_main, is_main, launched, rank, resolve_device, world_size
from utils.run_folder import (
    RunLog,
    git_commit,
    locked_run_folder,
    make_run_dir,
    read_json,
    remove_stale_temporaries,
    write_json_atomically,
)
from utils.tensorboard_log import TensorBoardLog
from utils.trial import Trial, Trials


def run_script(script: str, parse_args: Callable[[Sequence[str] | None], argparse.Namespace],
               build_experiment: Callable[[argparse.Namespace], Experiment], argv: Sequence[str] | None) -> int:
    """Run a script's experiment; return 0, or 2 for bad input and 1 for a diverged trial or an error raised inside
    torch, transformers or a collective (each prints `<script>.py: error: <message>` as the last stderr line, no
    traceback), or 130 for Ctrl-C. An error from inside a library says where it happened (the step, the process)
    and its first line; its traceback goes to a file named in that line (`keep_traceback`)."""
    prog = f"{script}.py"
    processes = None
    try:
        args = parse_args(argv)
        with Processes(prog, resolve_device(args.device, args.gpu_ids)) as processes:  # several, under torchrun
            experiment = build_experiment(args)
            if args.eval_only:
                evaluate_run(experiment, args)
            else:
                run_experiment(experiment, args)
    except KeyboardInterrupt:
        return _failed(processes, prog, 130, "interrupted", "interrupted; results of finished trials are kept")
    except (InputError, NonFiniteLossError) as error:
        message = one_line_message(error)
        return _failed(processes, prog, error.exit_code, message, f"error: {message}")
    except Exception as error:  # raised inside torch, transformers or a collective, or a bug of ours
        message = failure_message(error, prog)
        return _failed(processes, prog, 1, message, f"error: {message}")
    return 0


def _failed(processes: Processes | None, prog: str, code: int, message: str, line: str) -> int:
    """End with `code` after printing `<prog>: <line>` and telling the other processes (torchrun); a process of
    several leaves at once: shutting down its process group could wait for the others, which are stopping too."""
    if processes is not None:
        processes.failed(code, message)
    print(f"{prog}: {line}", file=sys.stderr)
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


def failure_message(error: Exception, prog: str) -> str:
    """What failed, in one line: the stage (a step, or the run), the process under torchrun, the error's type and the
    first line of its message, and the file that keeps its traceback."""
    stage = error if isinstance(error, StageError) else StageError("the run", error)
    where = f" on process {rank()}" if launched() else ""
    first = str(stage.error).strip().splitlines()
    return (f"{stage.stage} failed{where}: {type(stage.error).__name__}: {first[0] if first else ''} "
            f"(traceback in {keep_traceback(error, stage.folder, prog)})")


def keep_traceback(error: Exception, folder: Path | None, prog: str) -> Path:
    """Write `error`'s traceback to a file of this process in `folder` (the trial's), or in the system's temporary
    folder when the run has none yet or `folder` cannot be written; return its path."""
    text = "".join(traceback.format_exception(error))
    name = f"error_process{rank()}.txt"
    if folder is not None:
        try:
            (folder / name).write_text(text)
            return folder / name
        except OSError:
            pass
    handle, path = tempfile.mkstemp(prefix=f"{prog}_", suffix=f"_{name}")
    with os.fdopen(handle, "w") as file:
        file.write(text)
    return Path(path)


def run_experiment(experiment: Experiment, args: argparse.Namespace) -> dict:
    """Run (or resume) `args.n_times` trials with seeds random_seed + k; return the final results.

    Everything that can refuse the command is checked before its first write: a resume locks its folder and
    checks what it reads back, and the first trial to run is built (and restored) before the folder changes."""
    trials = Trials(experiment, args)
    with ExitStack() as held:
        run_dir = results = None
        if args.resume:
            run_dir = Path(args.resume)
            held.enter_context(locked_run_folder(run_dir))
            results = resumed_results(run_dir, experiment, args)
        finished = len(results["trials"]) if results else 0
        if finished == args.n_times:
            return _finished_before(run_dir, results, experiment)
        pending = _trial_to_train(trials, args, run_dir, finished)
        if run_dir is None:  # one new folder for the run, however many processes
            run_dir = from_main(make_run_dir(args.output_dir, args.script, f"seed{args.random_seed}", args.run_name)
                                if is_main() else None)
            held.enter_context(locked_run_folder(run_dir))
        log = RunLog(run_dir / "log.txt")
        log(f"Run folder: {run_dir}")
        if is_main():
            remove_stale_temporaries(run_dir)
        _write_args(experiment, args, run_dir)
        if results is None:
            teacher = experiment.teacher.source.as_dict() if experiment.teacher is not None else None
            results = {"experiment": experiment.tag, "teacher": teacher, "trials": [], "summary": None,
                       "complete": False,
                       "environment": {"torch": torch.__version__, "transformers": version("transformers"),
                                       "device": str(trials.device)}}
            write_json_atomically(results, run_dir / "results.json")
        try:
            for k in range(args.n_times):
                seed = args.random_seed + k
                if k < finished:
                    log(f"Trial {k + 1}/{args.n_times} (seed {seed}) finished before; kept")
                    continue
                record, trial, done = pending if k == finished else _trial_to_train(trials, args, None, k)
                trial_dir = run_dir / f"trial{k}"
                if is_main():
                    trial_dir.mkdir(exist_ok=True)
                    remove_stale_temporaries(trial_dir)
                write_json_atomically(record, trial_dir / "split.json", indent=None)
                log(f"Trial {k + 1}/{args.n_times} (seed {seed})"
                    + (f", resumed after epoch {done.epoch}" if done.epoch else ""))
                board = TensorBoardLog(trial_dir, trial.loaders["train"]) if args.tensorboard else None
                try:
                    summary = train_trial(trial, args.epochs, trial_dir, log, not args.no_progress, done, board)
                except StageError as error:
                    error.folder = trial_dir  # where this process keeps its traceback
                    raise
                if board is not None:
                    board.tested(args, seed, teacher_name(experiment), summary["val"], summary["test"])
                results["trials"].append({"trial": k, "seed": seed, **summary})
                results["summary"] = summarise(results["trials"])
                results["complete"] = len(results["trials"]) == args.n_times
                write_json_atomically(results, run_dir / "results.json")
                if is_main():
                    (trial_dir / STATE_FILE).unlink(missing_ok=True)  # in results.json: nothing left to resume
        except KeyboardInterrupt:
            if is_main():
                print(f"interrupted: continue with --resume {run_dir}", file=sys.stderr)
            raise
    _log_summary(log, results["summary"], experiment.tag)
    return results


def _finished_before(run_dir: Path, results: dict, experiment: Experiment) -> dict:
    """A run whose every trial has finished: said, and nothing trained or written."""
    if is_main():
        print(f"Run folder: {run_dir}")
        print("Every trial of the run finished before; nothing to train")
    _log_summary(print if is_main() else _silent, results["summary"], experiment.tag)
    return results


def _silent(line: str) -> None:
    """The log of every process but the first."""


def teacher_name(experiment: Experiment) -> str:
    return experiment.teacher.source.name if experiment.teacher is not None else "none"


def _trial_to_train(trials: Trials, args: argparse.Namespace, run_dir: Path | None,
                   k: int) -> tuple[dict, Trial, Progress] | None:
    """Trial k's split record, the trial built, and its progress: restored from its training state in `run_dir`
    (a resume) when it has one, with its best checkpoint checked. None when k is past the last trial."""
    if k >= args.n_times:
        return None
    seed = args.random_seed + k
    record = trials.split_record(seed)
    trial = trials.build(seed, record)
    state_file = run_dir / f"trial{k}" / STATE_FILE if run_dir else None
    if state_file is None or not state_file.is_file():
        return record, trial, Progress()
    done = restore_training_state(load_training_state(state_file, args.epochs), trial, state_file)
    if done.best_epoch:  # the best epoch so far must be there to be tested, unless a later one replaces it
        load_checkpoint(run_dir / f"trial{k}" / "best.pt", trial.student)
    return record, trial, done


def evaluate_run(experiment: Experiment, args: argparse.Namespace) -> dict:
    """`--eval_only RUN_DIR`: test every finished trial's best.pt of the run on that trial's recorded test split,
    with the run's options (args.json). The evaluation writes a folder of its own, `<output_dir>/<script>/
    <time>_eval` (log.txt, eval.json, each trial's split.json), never touches the run's files, and leaves no
    folder if it fails. On the CPU the numbers equal the run's own test numbers exactly."""
    run_dir = Path(args.eval_only)
    finished = resumed_results(run_dir, experiment, args)["trials"] if (run_dir / "results.json").is_file() else []
    if not finished:
        raise InputError(f"--eval_only {run_dir}: no trial of the run has finished; expected at least one best.pt")
    trials = Trials(experiment, args)
    out_dir = from_main(make_run_dir(args.output_dir, args.script, "eval") if is_main() else None)
    try:
        results = _evaluate_trials(experiment, args, trials, finished, run_dir, out_dir)
    except BaseException:
        if is_main():
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return results


def _evaluate_trials(experiment: Experiment, args: argparse.Namespace, trials: Trials, finished: list[dict],
                     run_dir: Path, out_dir: Path) -> dict:
    log = RunLog(out_dir / "log.txt")
    log(f"Run folder: {out_dir}")
    log(f"Evaluating the checkpoints of {run_dir}")
    results = {"experiment": experiment.tag, "evaluated_run": str(run_dir), "trials": [], "summary": None}
    for record in finished:
        k, seed = record["trial"], record["seed"]
        source, trial_dir = run_dir / f"trial{k}", out_dir / f"trial{k}"
        split = trials.split_record(seed, load_split_file(str(source / "split.json")))
        trial = trials.build(seed, split, testing_only=True)
        if is_main():
            trial_dir.mkdir()
        write_json_atomically(split, trial_dir / "split.json", indent=None)
        log(f"Trial {k + 1}/{len(finished)} (seed {seed}): {source / 'best.pt'}")
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


def _log_summary(log: Callable[[str], None], summary: dict, tag: str) -> None:
    log(f"Overall test acc: {100 * summary['test_acc_mean']:.2f} ± {100 * summary['test_acc_std']:.2f} {tag}")


def _write_args(experiment: Experiment, args: argparse.Namespace, run_dir: Path) -> None:
    """args.json: every option, D, argv and git commit; a resumed run also lists its resumptions."""
    path = run_dir / "args.json"
    resumptions = read_json(path, "the args.json this run wrote").get("resumed", []) if args.resume else []
    if args.resume:
        resumptions.append({"argv": sys.argv, "at": f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S}"})
    processes = {"world_size": world_size(), "backend": dist.get_backend() if dist.is_initialized() else None,
                 "batchnorm": "synchronised (SyncBatchNorm)" if world_size() > 1 else "per process"}
    arguments = {**vars(args), "feature_dim": experiment.feature_dim, "argv": sys.argv, "git_commit": git_commit(),
                 "processes": processes}
    write_json_atomically({**arguments, **({"resumed": resumptions} if args.resume else {})}, path)


def resumed_results(run_dir: Path, experiment: Experiment, args: argparse.Namespace) -> dict | None:
    """The results.json of a run being resumed or evaluated, checked as it was written (None if the run was
    stopped before it wrote one). A resume may grow --epochs only while no trial has finished: every trial of a
    run trains the same number of epochs."""
    path = run_dir / "results.json"
    if not path.is_file():
        return None
    results = read_json(path, "the results.json this run wrote")
    problem = results_problem(results, experiment, args)
    if problem:
        raise InputError(f"{path}: {problem}; expected the results.json this run wrote")
    recorded = read_json(run_dir / "args.json", "the args.json this run wrote").get("epochs", args.epochs)
    if args.resume and results["trials"] and args.epochs != recorded:
        done = ", ".join(str(trial["trial"] + 1) for trial in results["trials"])
        raise InputError(f"--resume {run_dir}: --epochs {args.epochs}, but trial(s) {done} finished with {recorded} "
                         f"epochs; expected --epochs {recorded} (every trial of a run trains as many epochs)")
    return results


def results_problem(results: Any, experiment: Experiment, args: argparse.Namespace) -> str | None:
    """What is wrong with a read-back results.json, or None."""
    if not isinstance(results, dict) or results.get("experiment") != experiment.tag:
        return f"no experiment {experiment.tag!r}"
    trials = results.get("trials")
    if not isinstance(trials, list) or len(trials) > args.n_times:
        return f"'trials' is not a list of at most {args.n_times} trials"
    if not isinstance(results.get("summary"), (dict, type(None))) or type(results.get("complete")) is not bool:
        return "'summary' is not an object (or null) or 'complete' not true or false"
    for k, trial in enumerate(trials):
        if not isinstance(trial, dict) or trial.get("trial") != k or trial.get("seed") != args.random_seed + k:
            return f"trial {k} is not the record of trial {k} with seed {args.random_seed + k}"
        best = trial.get("best_epoch")
        if type(best) is not int or best < 1 or not isinstance(trial.get("checkpoint"), str):
            return f"trial {k} has no best epoch >= 1 or no checkpoint"
        for split in ("val", "test"):
            problem = metrics_problem(trial.get(split), experiment.detailed_metrics)
            if problem:
                return f"trial {k}'s {split} metrics: {problem}"
    return None


def metrics_problem(metrics: Any, detailed: bool) -> str | None:
    """What is wrong with one split's metrics as results.json holds them, or None."""
    if not isinstance(metrics, dict):
        return "not an object"
    fractions = ("acc", "uar", "macro_f1") if detailed else ("acc",)
    for name in fractions:
        if not _number(metrics.get(name)) or not 0 <= metrics[name] <= 1:
            return f"{name} is not a fraction in [0, 1]"
    if not _number(metrics.get("cls_loss")) or not (metrics.get("latent_loss") is None
                                                    or _number(metrics["latent_loss"])):
        return "cls_loss or latent_loss is not a finite number"
    return None


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)
