"""--resume beyond tests/test_paths.py's cells (Ctrl-C or a kill in an epoch, for every script): Ctrl-C between
trials keeps the finished trial, and a kill between a training state and its best.pt loses nothing; options that
would change the result are refused, and so is another script's run."""

import json

import pytest

from tests.helpers import assert_same_outcome, dead_writer, last_line, run_in_process, the_run
from utils import checkpoints
from utils.trial import TrialBuilder


def test_ctrl_c_between_trials_then_a_kill_between_a_state_and_its_best_pt_then_resume_loses_nothing(
        a2v_reference, tmp_path, monkeypatch, capsys):
    argv, reference = a2v_reference
    original, built = TrialBuilder.build, []

    def build(self, seed, record):
        built.append(seed)
        if len(built) == 2:
            raise KeyboardInterrupt
        return original(self, seed, record)

    with monkeypatch.context() as patch:
        patch.setattr(TrialBuilder, "build", build)
        code, _, _ = run_in_process("AVMNIST_A2V.py", [*argv, "--output_dir", str(tmp_path)], capsys)
    folder = the_run(tmp_path)
    assert code == 130 and len(json.loads((folder / "results.json").read_text())["trials"]) == 1
    leftover = folder / f"results.json.tmp.{dead_writer()}"
    leftover.write_text("{ half-written")  # a write killed before its rename: never read, removed
    # The resume is killed too, after trial 2's first training state and before its best.pt. best.pt follows the
    # state, which holds the same student: the next resume writes best.pt from it.
    save = checkpoints.save_torch_atomically

    def killed_before_best(state, path):
        if path.name == "best.pt":
            raise KeyboardInterrupt
        save(state, path)

    with monkeypatch.context() as patch:
        patch.setattr(checkpoints, "save_torch_atomically", killed_before_best)
        code, out, _ = run_in_process("AVMNIST_A2V.py", ["--resume", str(folder), "--num_workers", "1"], capsys)
    assert code == 130 and "Trial 1/2 (seed 42) finished before; kept" in out and not leftover.exists()
    assert (folder / "trial1" / "train_state.pt").is_file() and not (folder / "trial1" / "best.pt").exists()
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
