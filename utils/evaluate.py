"""`--eval_only RUN_DIR`: each finished trial's best.pt evaluated again on that trial's recorded test split.

The script's own options are the run's (args.json); the evaluation writes a folder of its own,
`<output_dir>/<script>/<time>_eval` (log.txt, eval.json, each trial's split.json), and never touches
the run's files. On the CPU the numbers equal the run's own test numbers exactly.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from utils.atomic import write_json_atomically
from utils.distributed import from_main, is_main
from utils.errors import InputError
from utils.experiment import Experiment
from utils.preflight import load_split_file
from utils.run import summarise
from utils.run_folder import RunLog, make_run_dir
from utils.train import evaluate_checkpoint
from utils.trial import Trials


def evaluate_run(experiment: Experiment, args: argparse.Namespace) -> dict:
    """Test every finished trial's checkpoint of the run `args.eval_only`; return this evaluation's results."""
    run_dir = Path(args.eval_only)
    finished = _finished_trials(run_dir)
    out_dir = from_main(make_run_dir(args.output_dir, args.script, "eval") if is_main() else None)
    log = RunLog(out_dir / "log.txt")
    log(f"Run folder: {out_dir}")
    log(f"Evaluating the checkpoints of {run_dir}")
    trials = Trials(experiment, args)
    results = {"experiment": experiment.tag, "evaluated_run": str(run_dir), "trials": [], "summary": None}
    for trial in finished:
        k, seed = trial["trial"], trial["seed"]
        source, trial_dir = run_dir / f"trial{k}", out_dir / f"trial{k}"
        if is_main():
            trial_dir.mkdir()
        log(f"Trial {k + 1}/{len(finished)} (seed {seed}): {source / 'best.pt'}")
        setup = trials.build(seed, trial_dir, split=load_split_file(str(source / "split.json")), testing_only=True)
        test = evaluate_checkpoint(setup, source / "best.pt", log, progress=not args.no_progress)
        results["trials"].append({"trial": k, "seed": seed, "test": test, "checkpoint": str(source / "best.pt")})
    results["summary"] = summarise(results["trials"])
    write_json_atomically(results, out_dir / "eval.json")
    summary = results["summary"]
    log(f"Overall test acc: {100 * summary['test_acc_mean']:.2f} ± {100 * summary['test_acc_std']:.2f} "
        f"{experiment.tag}")
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
