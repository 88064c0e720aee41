"""Helpers the test modules share: running the scripts as a user would, and reading what a run wrote."""

from __future__ import annotations

import csv
import importlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from utils.run_folder import write_json_atomically
from utils.trial import Trial, TrialBuilder

REPO = Path(__file__).resolve().parents[1]


def run_as_user(script: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run one of the scripts in a fresh interpreter, as a user would, offline; return the finished process."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(cwd or REPO)}
    return subprocess.run([sys.executable, script, *args, "--no_progress"], capture_output=True, text=True, env=env,
                          cwd=cwd or REPO, timeout=600)


def run_in_process(script: str, argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """Run a script's main() in this process (no interpreter start-up); return (exit code, stdout, stderr)."""
    module = importlib.import_module(script.removesuffix(".py"))
    try:
        code = module.main([*argv, "--no_progress"])
    except SystemExit as exit_:  # argparse errors
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_folder(process: subprocess.CompletedProcess) -> Path:
    first = process.stdout.splitlines()[0]
    assert first.startswith("Run folder: "), process.stdout + process.stderr
    return Path(first[len("Run folder: "):])


def results_of(process: subprocess.CompletedProcess) -> dict:
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads((run_folder(process) / "results.json").read_text())


def results_in(folder: Path) -> dict:
    """The results.json of the one run under `folder`."""
    (path,) = folder.rglob("results.json")
    return json.loads(path.read_text())


def the_run(output_dir: Path) -> Path:
    """The one run folder under `output_dir` (not an --eval_only folder)."""
    (args,) = [path for path in output_dir.rglob("args.json") if not path.parent.name.endswith("_eval")]
    return args.parent


def rows_of(folder: Path, trial: int = 0) -> list[dict]:
    """A trial's metrics.csv rows."""
    return list(csv.DictReader(open(folder / f"trial{trial}" / "metrics.csv")))


def outcome(folder: Path) -> tuple:
    """What a run must reproduce: results.json's trials without checkpoint paths, metrics rows without timings, the
    best.pt of each trial."""
    results = json.loads((folder / "results.json").read_text())
    for trial in results["trials"]:
        trial.pop("checkpoint")
    rows, weights = {}, {}
    for trial in sorted(folder.glob("trial*")):
        rows[trial.name] = [{k: v for k, v in row.items() if not k.endswith("seconds")}
                            for row in csv.DictReader(open(trial / "metrics.csv"))]
        weights[trial.name] = torch.load(trial / "best.pt", weights_only=True)
    return results["trials"], rows, weights


def assert_same_outcome(a: Path, b: Path) -> None:
    """Two runs gave the same results, metrics and checkpoints, bit for bit."""
    (trials_a, rows_a, weights_a), (trials_b, rows_b, weights_b) = outcome(a), outcome(b)
    assert trials_a == trials_b and rows_a == rows_b
    assert weights_a.keys() == weights_b.keys()
    for trial, state in weights_a.items():
        assert state.keys() == weights_b[trial].keys()
        assert all(torch.equal(state[name], weights_b[trial][name]) for name in state), trial


def files_of(folder: Path) -> dict[Path, bytes]:
    """Every file under `folder` and its bytes."""
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def build_trial(script: ModuleType, argv: list[str], trial_dir: Path, seed: int | None = None) -> Trial:
    """A script's trial as its run builds it, without training: the same `TrialBuilder` that `run_experiment` uses, and
    the split.json it writes."""
    args = script.parse_args([*argv, "--no_progress"])
    trials, seed = TrialBuilder(script.build_experiment(args), args), args.random_seed if seed is None else seed
    record = trials.split_record(seed)
    trial_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomically(record, trial_dir / "split.json", indent=None)
    return trials.build(seed, record)


def interrupt_at_step(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """Ctrl-C (what SIGINT raises in Python) at the n-th optimizer step of the process."""
    original, calls = torch.optim.Adam.step, []

    def step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)


def dead_writer(host: str | None = None) -> str:
    """A writer's name (`<host>.<pid>`, as utils.run_folder.writer gives it) of a process that has ended: on this
    host, or on `host`."""
    process = subprocess.Popen(["true"])
    process.wait()
    return f"{host or socket.gethostname()}.{process.pid}"
