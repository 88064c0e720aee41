"""A run: a script's entry and exit codes, and `n_times` seeded trials in the run's folder with `results.json`
after each, and the summary line (`--eval_only`: utils/evaluate.py).

With `--resume RUN_DIR` the run continues in its folder: finished trials are kept, an unfinished one
continues after its last completed epoch (utils/loop.py). A command holds its run's folder from before it loads
anything (`claimed_run_folder`), and checks everything it reads back there before it writes.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import traceback
from contextlib import ExitStack, contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
import torch.distributed as dist

from utils.checkpoints import TrialProgress, load_checkpoint, load_training_state, restore_training_state
from utils.config import device_name
from utils.device import resolve_device
from utils.distributed import ProcessGroup, from_main, is_main, launched, rank, world_size
from utils.evaluate import evaluate_run
from utils.experiment import Experiment, InputError, NonFiniteLossError
from utils.loop import StageError, train_trial
from utils.recorded_options import resumed_results
from utils.run_files import BEST_FILE, STATE_FILE, overall_line, read_json, summarise
from utils.run_folder import (
    RunLog,
    check_run_folder_kinds,
    git_commit,
    locked_run_folder,
    make_run_dir,
    remove_made,
    remove_stale_temporaries,
    write_json_atomically,
)
from utils.tensorboard_log import TensorBoardLog
from utils.trial import Trial, TrialBuilder


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
        with ProcessGroup(prog, joining_device(prog, argv)) as processes, ExitStack() as held:
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


def _failed(processes: ProcessGroup | None, prog: str, code: int, message: str, line: str) -> int:
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
    check_run_folder_kinds(folder, args.n_times)


def run_experiment(experiment: Experiment, args: argparse.Namespace, run_dir: Path | None = None) -> dict:
    """Run (or resume) `args.n_times` trials with seeds random_seed + k in `run_dir` (held by this command; without
    it, the run claims its folder itself); return the final results.

    Everything that can refuse the command is checked before its first write: what a resume reads back, and the
    first trial to run is built (and restored) before the folder changes. What the folder holds is read by the
    first process and given to the others."""
    trials = TrialBuilder(experiment, args)
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
                record, trial, progress = pending if k == finished else _trial_to_train(trials, args, None, k)
                trial_dir = run_dir / f"trial{k}"
                if is_main():
                    trial_dir.mkdir(exist_ok=True)
                    remove_stale_temporaries(trial_dir)
                write_json_atomically(record, trial_dir / "split.json", indent=None)
                log(f"Trial {k + 1}/{args.n_times} (seed {seed})"
                    + (f", resumed after epoch {progress.epoch}" if progress.epoch else ""))
                board = TensorBoardLog(trial_dir, trial.loaders["train"]) if args.tensorboard else None
                try:
                    summary = train_trial(trial, args.epochs, trial_dir, log, not args.no_progress, progress, board)
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
    log(overall_line(results["summary"], experiment.tag))
    return results


def _finished_before(run_dir: Path, results: dict, experiment: Experiment) -> dict:
    """A run whose every trial has finished: said, and nothing trained or written."""
    if is_main():
        print(f"Run folder: {run_dir}")
        print("Every trial of the run finished before; nothing to train")
        print(overall_line(results["summary"], experiment.tag))
    return results


def teacher_name(experiment: Experiment) -> str:
    return experiment.teacher.source.name if experiment.teacher is not None else "none"


def _trial_to_train(trials: TrialBuilder, args: argparse.Namespace, run_dir: Path | None,
                   k: int) -> tuple[dict, Trial, TrialProgress] | None:
    """Trial k's split record, the trial built, and its progress: restored from its training state in `run_dir`
    (a resume) when it has one, with its best checkpoint checked. None when k is past the last trial."""
    if k >= args.n_times:
        return None
    seed = args.random_seed + k
    record = trials.split_record(seed)
    trial = trials.build(seed, record)
    state_file = run_dir / f"trial{k}" / STATE_FILE if run_dir else None
    if state_file is None or not from_main(state_file.is_file() if is_main() else None):
        return record, trial, TrialProgress()
    progress = restore_training_state(load_training_state(state_file, args.epochs), trial, state_file)
    if progress.best_epoch < progress.epoch:  # the best epoch so far must be there to be tested, unless a later one
        # replaces it; a best epoch that is the last saved one is in the state itself (utils.checkpoints.restore_best)
        load_checkpoint(run_dir / f"trial{k}" / BEST_FILE, trial.student)
    return record, trial, progress


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
