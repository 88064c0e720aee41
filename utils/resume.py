"""`--resume RUN_DIR`: continue an interrupted run in its own folder, with the options it was started with.

The recorded options (`args.json`) become the defaults; an option given again must keep its value,
except those that cannot change a result, and `--epochs`, which may grow.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from utils.errors import InputError

# Options that cannot change a result: a resumed run may give them anew.
FREE_ON_RESUME = frozenset({"num_workers", "no_progress", "device", "gpu_ids", "output_dir", "cache_dir", "resume"})


def recorded_options(run_dir: str, script: str) -> dict[str, Any]:
    """The options a run was started with, from its args.json."""
    path = Path(run_dir) / "args.json"
    try:
        recorded = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InputError(f"--resume {run_dir}: cannot read {path} ({type(error).__name__}); expected the folder "
                         "of a run of this script (it holds args.json)") from None
    if not isinstance(recorded, dict) or recorded.get("script") != script:
        found = recorded.get("script") if isinstance(recorded, dict) else None
        raise InputError(f"--resume {run_dir} is a run of {found}, not of {script}; expected a run folder of "
                         f"{script}.py")
    return recorded


def check_resumed_options(args: argparse.Namespace, recorded: dict[str, Any]) -> None:
    """Refuse (InputError) an option whose new value would change the run's results."""
    for name, value in recorded.items():
        if name in FREE_ON_RESUME or not hasattr(args, name) or getattr(args, name) == value:
            continue
        if name == "epochs" and args.epochs > value:
            continue
        expected = f"at least {value}" if name == "epochs" else f"{value!r}"
        raise InputError(f"--resume {args.resume}: --{name} {getattr(args, name)!r} differs from the run's "
                         f"{value!r}; expected {expected} (only --epochs may grow, and --num_workers, --device, "
                         "--no_progress and --cache_dir may change)")
