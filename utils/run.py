"""A run: a script's entry and exit codes, `n_times` seeded trials in the run's folder with `results.json`
after each, the summary line, and `--eval_only` (each finished trial's checkpoint tested again).

With `--resume RUN_DIR` the run continues in its folder: finished trials are kept, an unfinished one
continues after its last completed epoch (utils/loop.py). A command holds its run's folder from before it loads
anything (`claimed_run_folder`), and checks everything it reads back there before it writes.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import tempfile
import traceback
from contextlib import ExitStack, contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist

from utils.config import device_name, load_split_file
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
    LOCK_FILE,
    RunLog,
    check_kinds,
    git_commit,
    locked_run_folder,
    make_run_dir,
    read_json,
    remove_made,
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
        # Several processes under torchrun, joined before the options are read: the first one decides what
        # depends on the run's folder (utils.config.earlier_run).
        with Processes(prog, joining_device(prog, argv)) as processes, ExitStack() as held:
            args = parse_args(argv)
            run_dir = None if args.eval_only else held.enter_context(claimed_run_folder(args))
            experiment = build_experiment(args)
            if args.eval_only:
                evaluate_run(experiment, args)
            else:
                run_experiment(experiment, args, run_dir)
    except SystemExit as exit_:  # argparse: the same command line, refused alike by every process (or --help)
        return _ended(exit_.code)
    except KeyboardInterrupt:
        return _failed(processes, prog, 130, "interrupted", "interrupted; results of finished trials are kept")
    except (InputError, NonFiniteLossError) as error:
        message = one_line_message(error)
        return _failed(processes, prog, error.exit_code, message, f"error: {message}")
    except Exception as error:  # raised inside torch, transformers or a collective, or a bug of ours
        message = failure_message(error, prog)
        return _failed(processes, prog, 1, message, f"error: {message}")
    return 0


def joining_device(prog: str, argv: Sequence[str] | None) -> torch.device:
    """The device that decides how torchrun's processes join (NCCL on CUDA, else gloo): from `--device` as given
    (a run's args.json never sets it). Without CUDA they join on the CPU, and reading the options then refuses
    a `--device cuda`."""
    given = argparse.ArgumentParser(prog=prog, add_help=False)
    given.add_argument("--device", type=device_name, default="auto")
    device = given.parse_known_args(argv)[0].device
    return resolve_device(device if torch.cuda.is_available() else "cpu", "0")


def _failed(processes: Processes | None, prog: str, code: int, message: str, line: str) -> int:
    """End with `code` after printing `<prog>: <line>` and telling the other processes (torchrun); a process of
    several leaves at once: shutting down its process group could wait for the others, which are stopping too."""
    if processes is not None:
        processes.failed(code, message)
    print(f"{prog}: {line}", file=sys.stderr)
    return _ended(code)


def _ended(code: int) -> int:
    """A process of several leaves at once, without shutting down its process group."""
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


# What a run folder holds besides its trials, and what each trial folder holds, by kind.
RUN_FILES = ("args.json", "results.json", "log.txt", LOCK_FILE)
TRIAL_FILES = ("split.json", "metrics.csv", "best.pt", STATE_FILE)
TRIAL_FOLDERS = ("tensorboard",)


@contextmanager
def claimed_run_folder(args: argparse.Namespace) -> Iterator[Path]:
    """The run's folder, held by this command from before it loads anything until it ends (a second command is
    refused at once): the folder of `--resume`, or of `--run_name` (made if new), or a new one. Under the lock the
    first process checks again what the command decided from the folder before it held it (continue that run, or
    start it), and the kind of every entry the run reads or writes there. A folder made here is removed if the
    command ends before the run wrote its args.json: a refused command leaves nothing."""
    made = []
    if args.resume:
        folder = Path(args.resume)
    else:
        folder, made = from_main(make_run_dir(args.output_dir, args.script, f"seed{args.random_seed}", args.run_name)
                                 if is_main() else (None, []))
    try:
        with locked_run_folder(folder):
            if is_main():
                _check_claim(args, folder)
            yield folder
    except BaseException:
        if is_main() and not (folder / "args.json").exists():
            remove_made(made)
        raise


def _check_claim(args: argparse.Namespace, folder: Path) -> None:
    """What the command found before it held `folder` still holds, and each entry is a file or folder as expected."""
    path = folder / "args.json"
    if args.resume and read_json(path, "the args.json this run wrote") != args.earlier.recorded:
        raise InputError(f"{path} changed while this command started (another command on the run?); expected it "
                         "unchanged: run the command again")
    if not args.resume and path.exists():
        raise InputError(f"--run_name {args.run_name}: another command started the run of that name while this one "
                         "started; expected one command at a time on a run folder (run it again to continue the run)")
    check_kinds(folder, files=RUN_FILES, folders=[f"trial{k}" for k in range(args.n_times)])
    for k in range(args.n_times):
        check_kinds(folder / f"trial{k}", files=TRIAL_FILES, folders=TRIAL_FOLDERS)


def run_experiment(experiment: Experiment, args: argparse.Namespace, run_dir: Path | None = None) -> dict:
    """Run (or resume) `args.n_times` trials with seeds random_seed + k in `run_dir` (held by this command; without
    it, the run claims its folder itself); return the final results.

    Everything that can refuse the command is checked before its first write: what a resume reads back, and the
    first trial to run is built (and restored) before the folder changes. What the folder holds is read by the
    first process and given to the others."""
    trials = Trials(experiment, args)
    with ExitStack() as held:
        if run_dir is None:
            run_dir = held.enter_context(claimed_run_folder(args))
        results = from_main(resumed_results(run_dir, experiment, args) if is_main() else None) if args.resume else None
        finished = len(results["trials"]) if results else 0
        if finished == args.n_times:
            return _finished_before(run_dir, results, experiment)
        pending = _trial_to_train(trials, args, run_dir if args.resume else None, finished)
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
                again = "the same command" if args.run_name else f"--resume {run_dir}"
                print(f"interrupted: continue with {again}", file=sys.stderr)
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
    if state_file is None or not from_main(state_file.is_file() if is_main() else None):
        return record, trial, Progress()
    done = restore_training_state(load_training_state(state_file, args.epochs), trial, state_file)
    if done.best_epoch < done.epoch:  # the best epoch so far must be there to be tested, unless a later one
        # replaces it; a best epoch that is the last saved one is in the state itself (utils.loop.train_trial)
        load_checkpoint(run_dir / f"trial{k}" / "best.pt", trial.student)
    return record, trial, done


def evaluate_run(experiment: Experiment, args: argparse.Namespace) -> dict:
    """`--eval_only RUN_DIR`: test every finished trial's best.pt of the run on that trial's recorded test split,
    with the run's options (args.json). The evaluation writes a folder of its own, `<output_dir>/<script>/
    <time>_eval` (log.txt, eval.json, each trial's split.json), never touches the run's files, and leaves no
    folder if it fails. On the CPU the numbers equal the run's own test numbers exactly."""
    run_dir = Path(args.eval_only)
    if is_main():
        check_kinds(run_dir, files=RUN_FILES, folders=[f"trial{k}" for k in range(args.n_times)])
        for k in range(args.n_times):
            check_kinds(run_dir / f"trial{k}", files=TRIAL_FILES, folders=TRIAL_FOLDERS)
    results = from_main(resumed_results(run_dir, experiment, args) if is_main() else None)
    finished = results["trials"] if results else []
    if not finished:
        raise InputError(f"--eval_only {run_dir}: no trial of the run has finished; expected at least one best.pt")
    trials = Trials(experiment, args)
    out_dir, made = from_main(make_run_dir(args.output_dir, args.script, "eval") if is_main() else (None, []))
    try:
        results = _evaluate_trials(experiment, args, trials, finished, run_dir, out_dir)
    except BaseException:
        if is_main():
            remove_made(made)
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
    """args.json: every option, D, argv, git commit and processes, as the run was started; a resume keeps them
    (with --epochs, which may have grown) and adds its own argv, commit and time to the list "resumed"."""
    if args.resume:
        recorded = args.earlier.recorded
        resume = {"argv": sys.argv, "git_commit": git_commit(), "at": f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S}"}
        write_json_atomically({**recorded, "epochs": args.epochs, "resumed": [*recorded.get("resumed", []), resume]},
                              run_dir / "args.json")
        return
    processes = {"world_size": world_size(), "backend": dist.get_backend() if dist.is_initialized() else None,
                 "batchnorm": "synchronised (SyncBatchNorm)" if world_size() > 1 else "per process"}
    options = {name: value for name, value in vars(args).items() if name != "earlier"}
    write_json_atomically({**options, "feature_dim": experiment.feature_dim, "argv": sys.argv,
                           "git_commit": git_commit(), "processes": processes}, run_dir / "args.json")


def resumed_results(run_dir: Path, experiment: Experiment, args: argparse.Namespace) -> dict | None:
    """The results.json of a run being resumed or evaluated, checked as it was written (None if the run was
    stopped before it wrote one). A resume may grow --epochs only while no trial has finished: every trial of a
    run trains the same number of epochs."""
    path = run_dir / "results.json"
    if not path.exists():
        return None
    results = read_json(path, "the results.json this run wrote")
    problem = results_problem(results, experiment, args)
    if problem:
        raise InputError(f"{path}: {problem}; expected the results.json this run wrote")
    recorded = args.earlier.recorded.get("epochs", args.epochs)
    if args.resume and results["trials"] and args.epochs != recorded:
        done = ", ".join(str(trial["trial"] + 1) for trial in results["trials"])
        raise InputError(f"{args.earlier.option}: --epochs {args.epochs}, but trial(s) {done} finished with {recorded} "
                         f"epochs; expected --epochs {recorded} (every trial of a run trains as many epochs)")
    return results


RESULTS_FIELDS = {"experiment", "teacher", "trials", "summary", "complete", "environment"}
TRIAL_FIELDS = {"trial", "seed", "best_epoch", "val", "test", "checkpoint"}


def results_problem(results: Any, experiment: Experiment, args: argparse.Namespace) -> str | None:
    """What is wrong with a read-back results.json, or None: every field is as the run writes it."""
    if not isinstance(results, dict) or results.get("experiment") != experiment.tag:
        return f"no experiment {experiment.tag!r}"
    if results.keys() != RESULTS_FIELDS:
        return f"its fields are {', '.join(sorted(results))}; expected {', '.join(sorted(RESULTS_FIELDS))}"
    if not isinstance(results["teacher"], (dict, type(None))) or not isinstance(results["environment"], dict):
        return "'teacher' is not an object (or null) or 'environment' not an object"
    trials = results["trials"]
    if not isinstance(trials, list) or len(trials) > args.n_times:
        return f"'trials' is not a list of at most {args.n_times} trials"
    if not isinstance(results["summary"], (dict, type(None))) or type(results["complete"]) is not bool:
        return "'summary' is not an object (or null) or 'complete' not true or false"
    for k, trial in enumerate(trials):
        if not isinstance(trial, dict) or trial.get("trial") != k or trial.get("seed") != args.random_seed + k:
            return f"trial {k} is not the record of trial {k} with seed {args.random_seed + k}"
        if trial.keys() != TRIAL_FIELDS:
            return f"trial {k}'s fields are {', '.join(sorted(trial))}; expected {', '.join(sorted(TRIAL_FIELDS))}"
        best = trial["best_epoch"]
        if type(best) is not int or not 1 <= best <= args.epochs or not isinstance(trial["checkpoint"], str):
            return f"trial {k} has no best epoch in 1..{args.epochs} or no checkpoint"
        for split in ("val", "test"):
            problem = metrics_problem(trial[split], experiment)
            if problem:
                return f"trial {k}'s {split} metrics: {problem}"
    if results["summary"] != (summarise(trials) if trials else None):
        return f"'summary' is not the summary of its {len(trials)} trial(s) (null for none)"
    if results["complete"] != (len(trials) == args.n_times):
        return f"'complete' is {str(results['complete']).lower()} with {len(trials)} of {args.n_times} trials"
    return None


def metrics_problem(metrics: Any, experiment: Experiment) -> str | None:
    """What is wrong with one split's metrics as results.json holds them, or None."""
    fractions = ("acc", "uar", "macro_f1") if experiment.detailed_metrics else ("acc",)
    fields = {*fractions, "cls_loss", "latent_loss", *(("confusion",) if experiment.detailed_metrics else ())}
    if not isinstance(metrics, dict):
        return "not an object"
    if metrics.keys() != fields:
        return f"its fields are {', '.join(sorted(metrics))}; expected {', '.join(sorted(fields))}"
    for name in fractions:
        if not _number(metrics[name]) or not 0 <= metrics[name] <= 1:
            return f"{name} is not a fraction in [0, 1]"
    if not _number(metrics["cls_loss"]) or not (metrics["latent_loss"] is None or _number(metrics["latent_loss"])):
        return "cls_loss or latent_loss is not a finite number"
    classes = experiment.num_classes
    if "confusion" in fields and not _table_of_counts(metrics["confusion"], classes):
        return f"confusion is not a {classes} x {classes} table of counts"
    return None


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _table_of_counts(value: Any, size: int) -> bool:
    """A `size` x `size` list of lists of counts."""
    return type(value) is list and len(value) == size and all(
        type(row) is list and len(row) == size and all(type(n) is int and n >= 0 for n in row) for row in value)
