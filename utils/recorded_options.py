"""What an earlier run recorded, checked again when a command continues it (`--resume`, `--run_name` of a run that
has begun) or evaluates it (`--eval_only`): its args.json becomes the defaults, each recorded value is checked as
the same option on the command line would be, and an option given anew must keep its value, except those that
cannot change a result (`utils.run_files.RESULT_FREE_OPTIONS`) and `--epochs`, which may grow.

Which run that is (and whether a named one has begun) is decided by the first process alone and given to the
others: processes on several machines may see a shared filesystem at different moments.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.distributed import launched_world_size
from utils.experiment import Experiment, InputError
from utils.run_files import (
    RECORDS,
    RESULT_FREE_OPTIONS,
    RUN_ADDRESS_OPTIONS,
    read_json,
    record_problem,
    results_problem,
    shown,
)


@dataclass(frozen=True)
class EarlierRun:
    """The run a command continues (`--resume`, `--run_name` of a run that has begun) or evaluates (`--eval_only`)."""

    option: str  # as the command gave it, for messages: "--resume DIR", "--run_name NAME (DIR)", "--eval_only DIR"
    folder: Path
    recorded: dict[str, Any]  # its args.json, as the first process read it


def earlier_run(script: str, wanted: argparse.Namespace) -> EarlierRun | None:
    """The run that `--resume`, `--eval_only` or `--run_name` (`wanted`) names, with its args.json; None for a new
    run (a `--run_name` whose folder holds no args.json yet starts the run of that name)."""
    if wanted.run_name:
        folder = Path(wanted.output_dir) / script / wanted.run_name
        if folder.exists() and not folder.is_dir():
            raise InputError(f"--run_name {wanted.run_name}: {folder} is a file; expected the folder of the run of "
                             "that name, or nothing there")
        if not (folder / "args.json").exists():
            return None
        option = f"--run_name {wanted.run_name} ({folder})"
    elif wanted.resume or wanted.eval_only:
        folder = Path(wanted.resume or wanted.eval_only)
        option = f"--resume {folder}" if wanted.resume else f"--eval_only {folder}"
    else:
        return None
    return EarlierRun(option, folder, recorded_options(option, folder, script))


def recorded_options(option: str, run_dir: Path, script: str) -> dict[str, Any]:
    """The options a run was started with, from its args.json (`option` names the flag that asked)."""
    path = run_dir / "args.json"
    recorded = read_json(path, f"{option} to be the folder of a run of this script (it holds args.json)")
    if not isinstance(recorded, dict) or recorded.get("script") != script:
        found = recorded.get("script") if isinstance(recorded, dict) else None
        raise InputError(f"{option} is a run of {found}, not of {script}; expected a run folder of {script}.py")
    return recorded


def recorded_defaults(parser: argparse.ArgumentParser, recorded: dict[str, Any], path: Path) -> dict[str, Any]:
    """The recorded options, which become the defaults (but those that address a run: `--resume`, `--eval_only`,
    `--run_name`). Every field of args.json is checked first: each option as its value on the command line would be
    (a recorded lam 5 is refused like --lam 5, a recorded "3" where an integer belongs like --epochs three), each
    other record as `RECORDS` says, and no field besides."""
    actions = {action.dest: action for action in parser._actions
               if action.option_strings and action.help != argparse.SUPPRESS}  # not --help, nor a hidden option
    defaults = {}
    for name, value in recorded.items():
        if name in actions:
            checked = _recorded_value(actions[name], value, path)
            if name not in RUN_ADDRESS_OPTIONS:
                defaults[name] = checked
        elif name in RECORDS:
            problem = record_problem(name, value)
            if problem:
                raise InputError(f"{path}: {problem}")
        else:
            raise InputError(f"{path}: {name!r} is no option of {parser.prog} nor a record of its runs; expected "
                             "the args.json a run of this script wrote")
    return defaults


def _recorded_value(action: argparse.Action, value: Any, path: Path) -> Any:
    """`value` as recorded for `action`'s option, if it is one the option could have given; else InputError."""
    flag = action.option_strings[0]

    def refused(expected: str) -> InputError:
        return InputError(f"{path}: {action.dest} is {shown(value)}; expected {expected}, as {flag} takes")

    if action.nargs == 0:  # a flag such as --deterministic
        if type(value) is not bool:
            raise refused("true or false")
        return value
    if value is None:
        if action.default is not None:
            raise refused(f"a value (its default is {action.default!r})")
        return None
    if type(value) not in (str, int, float, bool):
        raise refused("a single value")
    try:
        parsed = action.type(str(value)) if action.type else str(value)
    except (argparse.ArgumentTypeError, ValueError) as error:
        raise refused(str(error).removeprefix("expected ").split(", got ")[0]) from None
    known = getattr(action, "known", None) or action.choices  # FirstChoiceFallback's choices are `known`
    if known is not None and parsed not in known:
        raise refused(f"one of {', '.join(map(str, known))}")
    if type(parsed) is float and type(value) is int:  # a JSON number without a fraction
        value = float(value)
    if type(parsed) is not type(value) or parsed != value:
        raise refused(f"a {type(parsed).__name__} such as {json.dumps(parsed)}")
    return parsed


def check_recorded_processes(earlier: EarlierRun) -> None:
    """A run continues with as many processes as it was started with (each process's random state is saved)."""
    size = earlier.recorded.get("processes", {"world_size": 1})["world_size"]
    if size != launched_world_size():
        raise InputError(f"{earlier.option}: the run was started with {size} process(es) and continues with "
                         f"{launched_world_size()}; expected as many (torchrun --nproc_per_node)")


def check_recorded_options(args: argparse.Namespace, earlier: EarlierRun) -> None:
    """Refuse (InputError) an option whose new value would change the run's results (any but
    `RESULT_FREE_OPTIONS`, and a larger --epochs)."""
    free = RESULT_FREE_OPTIONS | RUN_ADDRESS_OPTIONS
    for name, value in earlier.recorded.items():
        if name in free or not hasattr(args, name) or getattr(args, name) == value:
            continue
        if name == "epochs" and args.epochs > value:
            continue
        expected = f"at least {value}" if name == "epochs" else f"{value!r}"
        raise InputError(f"{earlier.option}: --{name} {getattr(args, name)!r} differs from the run's {value!r}; "
                         f"expected {expected} (--epochs may grow while no trial has finished; "
                         f"{', '.join('--' + option for option in sorted(RESULT_FREE_OPTIONS))} may change)")


def resumed_results(run_dir: Path, experiment: Experiment, args: argparse.Namespace) -> dict | None:
    """The results.json of a run being resumed or evaluated, checked as it was written (None if the run was
    stopped before it wrote one). A resume may grow --epochs only while no trial has finished: every trial of a
    run trains the same number of epochs."""
    path = run_dir / "results.json"
    if not path.exists():
        return None
    results = read_json(path, "the results.json this run wrote")
    problem = results_problem(results, experiment.tag, args.n_times, args.random_seed, args.epochs,
                              experiment.detailed_metrics, experiment.num_classes)
    if problem:
        raise InputError(f"{path}: {problem}; expected the results.json this run wrote")
    recorded = args.earlier.recorded.get("epochs", args.epochs)
    if args.resume and results["trials"] and args.epochs != recorded:
        done = ", ".join(str(trial["trial"] + 1) for trial in results["trials"])
        raise InputError(f"{args.earlier.option}: --epochs {args.epochs}, but trial(s) {done} finished with {recorded} "
                         f"epochs; expected --epochs {recorded} (every trial of a run trains as many epochs)")
    return results
