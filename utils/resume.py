"""A finished or interrupted run's own options: `--resume RUN_DIR` continues it, `--eval_only RUN_DIR`
evaluates its checkpoints, both with the options recorded in its args.json.

The recorded options become the defaults; an option given again must keep its value, except those
that cannot change a result, and `--epochs`, which may grow.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from utils.errors import InputError

# Options that cannot change a result: they may be given anew.
FREE_ON_RESUME = frozenset({"num_workers", "no_progress", "device", "gpu_ids", "output_dir", "cache_dir", "resume",
                            "eval_only"})


def recorded_options(option: str, run_dir: str, script: str) -> dict[str, Any]:
    """The options a run was started with, from its args.json (`option` names the flag that asked)."""
    path = Path(run_dir) / "args.json"
    try:
        recorded = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InputError(f"{option} {run_dir}: cannot read {path} ({type(error).__name__}); expected the folder "
                         "of a run of this script (it holds args.json)") from None
    if not isinstance(recorded, dict) or recorded.get("script") != script:
        found = recorded.get("script") if isinstance(recorded, dict) else None
        raise InputError(f"{option} {run_dir} is a run of {found}, not of {script}; expected a run folder of "
                         f"{script}.py")
    return recorded


def check_recorded_options(args: argparse.Namespace, recorded: dict[str, Any], option: str, run_dir: str) -> None:
    """Refuse (InputError) an option whose new value would change the run's results."""
    for name, value in recorded.items():
        if name in FREE_ON_RESUME or not hasattr(args, name) or getattr(args, name) == value:
            continue
        if name == "epochs" and args.epochs > value:
            continue
        expected = f"at least {value}" if name == "epochs" else f"{value!r}"
        raise InputError(f"{option} {run_dir}: --{name} {getattr(args, name)!r} differs from the run's "
                         f"{value!r}; expected {expected} (only --epochs may grow, and --num_workers, --device, "
                         "--no_progress and --cache_dir may change)")
