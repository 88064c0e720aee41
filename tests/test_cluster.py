"""Long runs on a cluster (tests/test_paths.py runs --tensorboard and a requeued --run_name job for every script): a
run's name is a folder name, and the SLURM examples are valid and run commands the scripts accept."""

import importlib
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO, last_line, run_in_process


@pytest.fixture
def argv(iemocap, tiny_models, tmp_path):
    return ["--audio_dir", str(iemocap), "--text_dir", str(iemocap / "IEMOCAP" / "texts"), "--teacher_path",
            tiny_models["wav2vec2"], "--student_path", tiny_models["bert"], "--subset", "44", "--batch_size", "4",
            "--epochs", "3", "--n_times", "2", "--warmup_epochs", "0", "--output_dir", str(tmp_path / "runs")]


def test_a_run_name_is_a_folder_name(argv, capsys):
    for name in ("", "a/b", ".."):
        code, _, err = run_in_process("IEMOCAP_A2T.py", [*argv, "--run_name", name], capsys)
        assert code == 2 and "argument --run_name: expected a folder name" in last_line(err)


# The job's commands, printed instead of run: srun runs what it is given (after its own options); torchrun and python
# print their arguments.
STUBS = """
srun() { while [[ $1 == -* ]]; do shift; done; "$@"; }
torchrun() { printf '%s\\0' "$@"; printf '\\n'; }
python() { printf '%s\\0' "$@"; printf '\\n'; }
scontrol() { echo node001; }
"""
SLURM = {"SLURM_GPUS_ON_NODE": "4", "SLURM_JOB_NAME": "job", "SLURM_NNODES": "2", "SLURM_JOB_ID": "77",
         "SLURM_JOB_NODELIST": "node[001-002]", "SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_JOB_ID": "76",
         "SLURM_CPUS_PER_TASK": "8"}


def job_commands(job: Path, folder: Path) -> list[list[str]]:
    """The script command lines `job` runs, as its shell expands them."""
    process = subprocess.run(["bash", "-c", f"{STUBS}\nsource {shlex.quote(str(job))}"], capture_output=True,
                             text=True, env={"PATH": "/usr/bin:/bin", "SLURM_SUBMIT_DIR": str(folder), **SLURM})
    assert process.returncode == 0, process.stderr
    commands = []
    for line in process.stdout.splitlines():
        words = line.split("\0")[:-1]
        scripts = [k for k, word in enumerate(words) if word.endswith(".py")]
        if scripts:
            commands.append(words[scripts[0]:])
    return commands


@pytest.mark.parametrize("job", sorted((REPO / "examples" / "slurm").glob("*.sbatch")), ids=lambda path: path.name)
def test_the_slurm_jobs_are_valid_shell_and_run_commands_the_scripts_accept(job, tmp_path):
    assert subprocess.run(["bash", "-n", str(job)], capture_output=True).returncode == 0
    commands = job_commands(job, tmp_path)
    assert commands, job
    for script, *words in commands:
        args = importlib.import_module(script.removesuffix(".py")).parse_args([*words, "--output_dir",
                                                                              str(tmp_path / "runs")])
        assert args.run_name, "a job names its run, so that a requeued job continues it"
