import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Tests never touch the network: hub ids fail at once instead of retrying.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Idle OpenMP threads spin by default; on a shared 2-core machine that slows every torch process
# several times. Set before torch is imported; run_script passes it on to the scripts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]


def run_script(script: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run one of the four scripts as a user would, offline, and return the finished process."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / script), *args, "--no_progress"], capture_output=True,
                          text=True, env=env, cwd=cwd or REPO, timeout=600)


def run_in_process(script: str, argv: list[str], capsys) -> tuple[int, str, str]:
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


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Tiny random teachers and students saved like downloaded weights."""
    from models.tiny import save_resnet18_state_dict, save_tiny_bert, save_tiny_wav2vec2

    root = tmp_path_factory.mktemp("tiny_models")
    return {"resnet18": str(save_resnet18_state_dict(root / "resnet18.pth")),
            "wav2vec2": str(save_tiny_wav2vec2(root / "wav2vec2")),
            "bert": str(save_tiny_bert(root / "bert"))}
