"""--resume: an interrupted run (Ctrl-C mid-epoch, Ctrl-C between trials, a kill between a training state and its
best.pt, SIGKILL) continues in its folder and ends bit-identical to the same run left alone; options that would
change the result are refused."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import IEMOCAP_T2A
from tests.helpers import REPO, assert_same_outcome, dead_writer, interrupt_at_step, last_line, run_in_process
from utils import loop
from utils.trial import Trials


def run_dir(output_dir):
    (args,) = output_dir.rglob("args.json")
    return args.parent


def test_ctrl_c_mid_epoch_then_resume_equals_the_run_left_alone(a2v_reference, tmp_path, monkeypatch, capsys):
    argv, reference = a2v_reference
    with monkeypatch.context() as patch:
        interrupt_at_step(patch, 5)  # trial 0, epoch 2, second step
        code, _, err = run_in_process("AVMNIST_A2V.py", [*argv, "--output_dir", str(tmp_path)], capsys)
    folder = run_dir(tmp_path)
    assert code == 130 and f"continue with --resume {folder}" in err
    results = json.loads((folder / "results.json").read_text())
    assert results["complete"] is False and results["trials"] == []
    code, out, err = run_in_process("AVMNIST_A2V.py", ["--resume", str(folder)], capsys)
    assert code == 0, err
    assert "Trial 1/2 (seed 42), resumed after epoch 1" in out
    assert json.loads((folder / "results.json").read_text())["complete"] is True
    assert not list(folder.rglob("train_state.pt"))  # finished trials need no training state
    assert_same_outcome(folder, reference)


def test_ctrl_c_between_trials_then_a_kill_between_a_state_and_its_best_pt_then_resume_loses_nothing(
        a2v_reference, tmp_path, monkeypatch, capsys):
    argv, reference = a2v_reference
    original, built = Trials.build, []

    def build(self, seed, record):
        built.append(seed)
        if len(built) == 2:
            raise KeyboardInterrupt
        return original(self, seed, record)

    with monkeypatch.context() as patch:
        patch.setattr(Trials, "build", build)
        code, _, _ = run_in_process("AVMNIST_A2V.py", [*argv, "--output_dir", str(tmp_path)], capsys)
    folder = run_dir(tmp_path)
    assert code == 130 and len(json.loads((folder / "results.json").read_text())["trials"]) == 1
    leftover = folder / f"results.json.tmp.{dead_writer()}"
    leftover.write_text("{ half-written")  # a write killed before its rename: never read, removed
    # The resume is killed too, after trial 2's first training state and before its best.pt. best.pt follows the
    # state, which holds the same student: the next resume writes best.pt from it.
    save = loop.save_torch_atomically

    def killed_before_best(state, path):
        if path.name == "best.pt":
            raise KeyboardInterrupt
        save(state, path)

    with monkeypatch.context() as patch:
        patch.setattr(loop, "save_torch_atomically", killed_before_best)
        code, out, _ = run_in_process("AVMNIST_A2V.py", ["--resume", str(folder), "--num_workers", "1"], capsys)
    assert code == 130 and "Trial 1/2 (seed 42) finished before; kept" in out and not leftover.exists()
    assert (folder / "trial1" / "train_state.pt").is_file() and not (folder / "trial1" / "best.pt").exists()
    code, _, err = run_in_process("AVMNIST_A2V.py", ["--resume", str(folder)], capsys)
    assert code == 0, err
    assert_same_outcome(folder, reference)


def test_sigkill_mid_run_then_resume_equals_the_run_left_alone(a2v_reference, tmp_path, capsys):
    argv, reference = a2v_reference
    process = subprocess.Popen([sys.executable, "AVMNIST_A2V.py", *argv, "--no_progress", "--output_dir",
                                str(tmp_path)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 120
    while not list(tmp_path.rglob("train_state.pt")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # right after the first epoch's training state was written
    process.wait()
    folder = run_dir(tmp_path)
    code, _, err = run_in_process("AVMNIST_A2V.py", ["--resume", str(folder)], capsys)
    assert code == 0, err
    assert_same_outcome(folder, reference)


@pytest.mark.parametrize("change, message", [
    (["--lam", "0.5"], "--lam 0.5 differs from the run's 0.3"),
    (["--epochs", "1"], "--epochs 1 differs from the run's 2; expected at least 2"),
    (["--batch_size", "32"], "--batch_size 32 differs"),
])
def test_a_resume_that_would_change_the_result_is_refused(a2v_reference, change, message, capsys):
    _, reference = a2v_reference
    before = (reference / "results.json").read_text()
    code, _, err = run_in_process("AVMNIST_A2V.py", ["--resume", str(reference), *change], capsys)
    assert code == 2 and last_line(err).startswith("AVMNIST_A2V.py: error: ") and message in last_line(err)
    assert (reference / "results.json").read_text() == before


def test_resume_of_something_else_is_refused(a2v_reference, tmp_path, capsys):
    _, reference = a2v_reference
    code, _, err = run_in_process("IEMOCAP_T2A.py", ["--resume", str(reference)], capsys)
    assert code == 2 and "is a run of AVMNIST_A2V, not of IEMOCAP_T2A" in last_line(err)
    code, _, err = run_in_process("AVMNIST_A2V.py", ["--resume", str(tmp_path)], capsys)
    assert code == 2 and "cannot read" in last_line(err) and "args.json" in last_line(err)


def test_an_iemocap_run_with_a_randomised_student_resumes_exactly(iemocap, tiny_models, tmp_path, monkeypatch,
                                                                  capsys):
    # The wav2vec2 student draws noise and time masks from the global generators in every step.
    argv = ["--audio_dir", str(iemocap), "--text_dir", str(iemocap / "IEMOCAP" / "texts"), "--teacher_path",
            tiny_models["bert"], "--student_path", tiny_models["wav2vec2"], "--subset", "48", "--epochs", "3",
            "--n_times", "1", "--batch_size", "8", "--learning_rate", "3e-3", "--warmup_epochs", "1"]
    assert IEMOCAP_T2A.main([*argv, "--no_progress", "--output_dir", str(tmp_path / "alone")]) == 0
    with monkeypatch.context() as patch:
        interrupt_at_step(patch, 9)  # epoch 2 of 6 steps, third step
        code, _, _ = run_in_process("IEMOCAP_T2A.py", [*argv, "--output_dir", str(tmp_path / "cut")], capsys)
    assert code == 130
    code, _, err = run_in_process("IEMOCAP_T2A.py", ["--resume", str(run_dir(tmp_path / "cut"))], capsys)
    assert code == 0, err
    assert_same_outcome(run_dir(tmp_path / "cut"), run_dir(tmp_path / "alone"))
    # Workers read the data; the numbers do not depend on how many.
    code, _, err = run_in_process("IEMOCAP_T2A.py", [*argv, "--num_workers", "1", "--output_dir",
                                                     str(tmp_path / "workers")], capsys)
    assert code == 0, err
    assert_same_outcome(run_dir(tmp_path / "workers"), run_dir(tmp_path / "alone"))
