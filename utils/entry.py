"""A script's entry: parse, build, run, and end with an exit code and, for known failures, one stderr line."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from utils.config import resolve_device
from utils.distributed import Processes, launched
from utils.errors import InputError, NonFiniteLossError
from utils.evaluate import evaluate_run
from utils.experiment import Experiment
from utils.run import run_experiment


def run_script(script: str, parse_args: Callable[[Sequence[str] | None], argparse.Namespace],
               build_experiment: Callable[[argparse.Namespace], Experiment], argv: Sequence[str] | None) -> int:
    """Run a script's experiment; return 0, or 2 for bad input and 1 for a diverged trial (both print
    `<script>.py: error: <message>` as the last stderr line, no traceback), or 130 for Ctrl-C.
    Any other exception is a bug and keeps its traceback."""
    prog = f"{script}.py"
    try:
        args = parse_args(argv)
        with Processes(prog, resolve_device(args)):  # several, under torchrun
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
    others, which are stopping too (utils.distributed.Processes)."""
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
