"""`--eval_only RUN_DIR`: each finished trial's `best.pt` of a run tested again on its recorded test split, with the
run's options, in a folder of its own."""

from __future__ import annotations

import argparse
from pathlib import Path

from utils.distributed import from_main, is_main
from utils.experiment import Experiment, InputError
from utils.loop import evaluate_checkpoint
from utils.recorded_options import resumed_results
from utils.run_files import overall_line, read_split_file, summarise
from utils.run_folder import RunLog, check_run_folder_kinds, make_run_dir, remove_made, write_json_atomically
from utils.trial import TrialBuilder


def evaluate_run(experiment: Experiment, args: argparse.Namespace) -> dict:
    """`--eval_only RUN_DIR`: test every finished trial's best.pt of the run on that trial's recorded test split,
    with the run's options (args.json). The evaluation writes a folder of its own, `<output_dir>/<script>/
    <time>_eval` (log.txt, eval.json, each trial's split.json), never touches the run's files, and leaves no
    folder if it fails. On the CPU the numbers equal the run's own test numbers exactly."""
    run_dir = Path(args.eval_only)
    if is_main():
        check_run_folder_kinds(run_dir, args.n_times)
    results = from_main(resumed_results(run_dir, experiment, args) if is_main() else None)
    finished = results["trials"] if results else []
    if not finished:
        raise InputError(f"--eval_only {run_dir}: no trial of the run has finished; expected at least one best.pt")
    trials = TrialBuilder(experiment, args)
    out_dir, made = from_main(make_run_dir(args.output_dir, args.script, "eval") if is_main() else (None, []))
    try:
        results = _evaluate_trials(experiment, args, trials, finished, run_dir, out_dir)
    except BaseException:
        if is_main():
            remove_made(made)
        raise
    return results


def _evaluate_trials(experiment: Experiment, args: argparse.Namespace, trials: TrialBuilder, finished: list[dict],
                     run_dir: Path, out_dir: Path) -> dict:
    log = RunLog(out_dir / "log.txt")
    log(f"Run folder: {out_dir}")
    log(f"Evaluating the checkpoints of {run_dir}")
    results = {"experiment": experiment.tag, "evaluated_run": str(run_dir), "trials": [], "summary": None}
    for record in finished:
        k, seed = record["trial"], record["seed"]
        source, trial_dir = run_dir / f"trial{k}", out_dir / f"trial{k}"
        split = trials.split_record(seed, read_split_file(source / "split.json", "the recorded split"))
        trial = trials.build(seed, split, testing_only=True)
        if is_main():
            trial_dir.mkdir()
        write_json_atomically(split, trial_dir / "split.json", indent=None)
        log(f"Trial {k + 1}/{len(finished)} (seed {seed}): {source / 'best.pt'}")
        test = evaluate_checkpoint(trial, source / "best.pt", log, bars=not args.no_progress)
        results["trials"].append({"trial": k, "seed": seed, "test": test, "checkpoint": str(source / "best.pt")})
    results["summary"] = summarise(results["trials"])
    write_json_atomically(results, out_dir / "eval.json")
    log(overall_line(results["summary"], experiment.tag))
    return results
