"""Long runs on a cluster: --tensorboard logs what metrics.csv holds (once per epoch, across a resume), --run_name
lets a requeued job continue its run, and the SLURM examples are valid and run commands the scripts accept."""

import csv
import importlib
import json
import shlex
import subprocess
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.helpers import REPO, interrupt_at_step, last_line, run_in_process
from utils.tensorboard_log import SMOOTHING_STEPS

EPOCHS = 3
COLUMNS = {"train/cls_loss": "train_cls", "train/latent_loss": "train_latent", "train/acc": "train_acc",
           "val/cls_loss": "val_cls", "val/latent_loss": "val_latent", "val/acc": "val_acc", "train/lr": "lr"}


@pytest.fixture
def argv(iemocap, tiny_models, tmp_path):
    return ["--audio_dir", str(iemocap), "--text_dir", str(iemocap / "IEMOCAP" / "texts"), "--teacher_path",
            tiny_models["wav2vec2"], "--student_path", tiny_models["bert"], "--subset", "44", "--batch_size", "4",
            "--epochs", str(EPOCHS), "--n_times", "2", "--warmup_epochs", "0", "--output_dir", str(tmp_path / "runs")]


def outcome(folder: Path) -> tuple:
    results = json.loads((folder / "results.json").read_text())
    rows = [[{k: v for k, v in row.items() if not k.endswith("seconds")} for row in csv.DictReader(open(path))]
            for path in sorted(folder.glob("trial*/metrics.csv"))]
    return [{k: v for k, v in trial.items() if k != "checkpoint"} for trial in results["trials"]], rows


def test_a_requeued_named_run_continues_and_equals_the_run_left_alone(argv, tmp_path, monkeypatch, capsys):
    named = [*argv, "--run_name", "sweep_lam0.3"]
    with monkeypatch.context() as patch:
        interrupt_at_step(patch, 11 * EPOCHS + 11 + 5)  # 11 steps an epoch: trial 2, epoch 2
        code, out, _ = run_in_process("IEMOCAP_A2T.py", [*named, "--tensorboard"], capsys)
    folder = tmp_path / "runs" / "IEMOCAP_A2T" / "sweep_lam0.3"
    assert code == 130 and out.startswith(f"Run folder: {folder}\n")
    code, out, err = run_in_process("IEMOCAP_A2T.py", [*named, "--tensorboard"], capsys)  # the job, requeued
    assert code == 0, err[-3000:]
    assert "Trial 1/2 (seed 1234) finished before; kept" in out
    assert "Trial 2/2 (seed 1235), resumed after epoch 1" in out
    code, _, err = run_in_process("IEMOCAP_A2T.py", [*argv, "--output_dir", str(tmp_path / "alone")], capsys)
    assert code == 0, err[-3000:]
    (alone,) = (tmp_path / "alone").glob("IEMOCAP_A2T/*")
    assert outcome(folder) == outcome(alone)
    before = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    code, out, _ = run_in_process("IEMOCAP_A2T.py", named, capsys)  # once more: finished, nothing to train
    assert code == 0 and "Every trial of the run finished before; nothing to train" in out
    assert last_line(out).startswith("Overall test acc: ")
    assert {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()} == before
    check_tensorboard(folder)


def check_tensorboard(folder: Path) -> None:
    """Every epoch's scalars once, equal to metrics.csv; the smoothed loss; the hyperparameters with test acc."""
    results = json.loads((folder / "results.json").read_text())
    for k, trial in enumerate(results["trials"]):
        events = EventAccumulator(str(folder / f"trial{k}" / "tensorboard"))
        events.Reload()
        rows = list(csv.DictReader(open(folder / f"trial{k}" / "metrics.csv")))
        for tag, column in COLUMNS.items():
            logged = events.Scalars(tag)
            assert [event.step for event in logged] == list(range(1, EPOCHS + 1)), tag  # each epoch once
            assert [event.value for event in logged] == pytest.approx([float(row[column]) for row in rows],
                                                                      rel=1e-6), tag  # stored as float32
        # One point per SMOOTHING_STEPS (10) of an epoch's 11 steps, at its global step.
        assert [event.step for event in events.Scalars("train/loss_smoothed")] == [
            (epoch - 1) * 11 + SMOOTHING_STEPS for epoch in range(1, EPOCHS + 1)]
        assert len(events.Scalars("train/samples_per_second")) == EPOCHS
        assert events.Scalars("hparam/test_acc")[0].value == pytest.approx(trial["test"]["acc"], rel=1e-6)
        assert {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(
            events.PluginTagToContent("hparams"))


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
