"""A run folder read back is a stranger's input: each case damages a copy of a tiny interrupted run (trial 1 of 2
finished, trial 2 after its first epoch), then `--resume`s or `--eval_only`s it in this process, and expects exit 2
with one last stderr line naming the file and what was expected, no traceback, the folder unchanged to the byte,
and no evaluation folder left behind. Also: one writer per run folder (held by another process, or on a
filesystem that cannot lock), a resume that keeps the run's own record, refusals under --run_name, and the epochs
of a run."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest.mock import ANY

import pytest
import torch

import IEMOCAP_A2T
from tests.helpers import interrupt_at_step, last_line, run_in_process
from utils.run_folder import locked_run_folder

A2T = "IEMOCAP_A2T.py"
EPOCHS = 2


@pytest.fixture(scope="module")
def a2t_argv(iemocap, tiny_models):
    """A tiny A->T run of two trials."""
    return ["--audio_dir", str(iemocap), "--text_dir", str(iemocap / "IEMOCAP" / "texts"), "--teacher_path",
            tiny_models["wav2vec2"], "--student_path", tiny_models["bert"], "--subset", "8", "--batch_size", "4",
            "--epochs", str(EPOCHS), "--n_times", "2", "--warmup_epochs", "0", "--no_progress"]


@pytest.fixture(scope="module")
def interrupted(a2t_argv, tmp_path_factory):
    """The run folder of the tiny A->T run stopped by Ctrl-C in trial 2's second epoch."""
    output = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as patch:
        interrupt_at_step(patch, 2 * EPOCHS + 3)  # 2 steps an epoch: trial 2, epoch 2, first step
        assert IEMOCAP_A2T.main([*a2t_argv, "--output_dir", str(output)]) == 130
    (folder,) = output.glob("IEMOCAP_A2T/*")
    assert (folder / "trial1" / "train_state.pt").is_file()
    return folder


def files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


# Damage helpers --------------------------------------------------------------------------------------------------

def edit_json(name: str, change: Callable[[Any], Any]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        path = folder / name
        path.write_text(json.dumps(change(json.loads(path.read_text())), allow_nan=True))
    return damage


def with_key(key: str, value: Any) -> Callable[[dict], dict]:
    return lambda record: {**record, key: value}


def in_trial(k: int, key: str, value: Any, split: str | None = None) -> Callable[[dict], dict]:
    """results.json with trial k's `key` (of its `split` metrics, if given) set to `value`."""
    def change(results: dict) -> dict:
        target = results["trials"][k][split] if split else results["trials"][k]
        target[key] = value
        return results
    return change


def text(name: str, content: bytes) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_bytes(content)


def truncate(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_bytes((folder / name).read_bytes()[:200])


def remove(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).unlink()


def edit_torch(name: str, change: Callable[[Any], Any]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        path = folder / name
        torch.save(change(torch.load(path, weights_only=True)), path)
    return damage


def without(key: str) -> Callable[[dict], dict]:
    return lambda state: {name: value for name, value in state.items() if name != key}


def progress_with(key: str, value: Any) -> Callable[[dict], dict]:
    return lambda state: {**state, "progress": {**state["progress"], key: value}}


def first_weight_resized(state: dict) -> dict:
    name = next(iter(state))
    return {**state, name: torch.zeros(3, 3)}


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def best_before_last(damage: Callable[[Path], None]) -> Callable[[Path], None]:
    """`damage` on a folder whose unfinished trial saved its last epoch (2 of 2) after its best (1): a resume then
    tests the trial's best.pt, which the saved state does not hold."""
    def both(folder: Path) -> None:
        edit_torch(STATE, lambda state: {**state, "progress": {**state["progress"], "epoch": 2,
                                                               "rows": state["progress"]["rows"] * 2}})(folder)
        damage(folder)
    return both


STATE, BEST, LATEST_BEST = "trial1/train_state.pt", "trial0/best.pt", "trial1/best.pt"


@dataclass(frozen=True)
class Case:
    id: str
    option: str  # --resume or --eval_only
    damage: Callable[[Path], None]
    expected: str  # in the last stderr line


def args_case(key: str, value: Any, expected: str) -> Case:
    return Case(f"args.json {key}={json.dumps(value)}", "--resume", edit_json("args.json", with_key(key, value)),
                expected)


CASES = [
    # args.json: every recorded option goes through the command line's own checks.
    args_case("lam", 5.0, "lam is 5.0; expected a number in [0, 1], as --lam takes"),
    args_case("lam", None, "lam is null; expected a value"),
    args_case("lam", "abc", "expected a number in [0, 1]"),
    args_case("epochs", "2", 'epochs is "2"; expected a int such as 2'),
    args_case("epochs", 0, "expected an integer >= 1"),
    args_case("epochs", True, "epochs is true"),
    args_case("n_times", 2.5, "expected an integer >= 1"),
    args_case("batch_size", [4], "expected a single value"),
    args_case("learning_rate", float("inf"), "(Infinity is not strict JSON)"),
    args_case("learning_rate", "0.001", 'learning_rate is "0.001"; expected a float'),
    args_case("optim", "rmsprop", "expected one of sgd, adam, adamw"),
    args_case("classes", 5, "expected one of 6, 4"),
    args_case("split", "other", "expected one of random, session"),
    args_case("pairing", None, "pairing is null"),
    args_case("teacher_cache", "maybe", "expected one of on, off"),
    args_case("amp", "fp8", "expected one of none, bf16, fp16"),
    args_case("subset", -1, "expected an integer >= 1"),
    args_case("subset", "8", 'subset is "8"'),
    args_case("warmup_epochs", -1, "expected an integer >= 0"),
    args_case("max_audio_seconds", 1e9, "expected seconds in (0, 3600.0]"),
    args_case("deterministic", "yes", "expected true or false"),
    args_case("gradient_checkpointing", 1, "expected true or false"),
    args_case("random_seed", "1234", 'random_seed is "1234"'),
    args_case("random_seed", 1.5, "random_seed is 1.5"),
    args_case("mj_model", "huge", "expected one of base, large"),
    args_case("text_dir", "", "text_dir is \"\"; expected a path"),
    args_case("audio_dir", 5, 'audio_dir is 5; expected a str such as "5"'),
    args_case("student_path", {"a": 1}, "expected a single value"),
    args_case("version", 3, "version is 3"),
    args_case("processes", {"world_size": "1"}, 'processes is {"world_size": "1"}; expected an object'),
    Case("args.json of two processes", "--resume",
         edit_json("args.json", lambda args: {**args, "processes": {**args["processes"], "world_size": 2}}),
         "started with 2 process(es) and continues with 1"),
    args_case("resumed", {"argv": []}, 'resumed is {"argv": []}; expected a list'),
    args_case("resumed", [{"argv": "IEMOCAP_A2T.py", "at": "now"}], "expected a list of"),
    args_case("argv", None, "argv is null; expected the command line"),
    args_case("git_commit", 7, "git_commit is 7"),
    args_case("feature_dim", "32", 'feature_dim is "32"'),
    args_case("colour", "red", "'colour' is no option of IEMOCAP_A2T.py nor a record of its runs"),
    args_case("num_workers", "two", "expected an integer >= 0"),  # may change, yet is checked
    args_case("script", "IEMOCAP_T2A", "is a run of IEMOCAP_T2A, not of IEMOCAP_A2T"),
    Case("args.json not JSON", "--resume", text("args.json", b"{"), "cannot read"),
    Case("args.json a list", "--eval_only", text("args.json", b"[1, 2]"), "is a run of None"),
    Case("args.json nested 100000 deep", "--resume", text("args.json", nested(100_000)), "RecursionError"),
    # results.json: the trials it keeps are the run's own.
    Case("results.json not JSON", "--resume", text("results.json", b"{"), "results.json (JSONDecodeError)"),
    Case("results.json nested 100000 deep", "--eval_only", text("results.json", nested(100_000)), "RecursionError"),
    Case("results.json of another experiment", "--resume",
         edit_json("results.json", with_key("experiment", "IEMOCAP T->A")), "no experiment 'IEMOCAP A->T'"),
    Case("results.json trials an object", "--resume", edit_json("results.json", with_key("trials", {})),
         "'trials' is not a list"),
    Case("results.json with more trials than n_times", "--eval_only",
         edit_json("results.json", lambda r: {**r, "trials": r["trials"] * 3}), "at most 2 trials"),
    Case("results.json summary a string", "--resume", edit_json("results.json", with_key("summary", "good")),
         "'summary' is not an object"),
    Case("results.json complete a string", "--resume", edit_json("results.json", with_key("complete", "no")),
         "'complete' not true or false"),
    Case("results.json trial of another seed", "--resume", edit_json("results.json", in_trial(0, "seed", 7)),
         "trial 0 is not the record of trial 0 with seed 1234"),
    Case("results.json trial numbered 1", "--eval_only", edit_json("results.json", in_trial(0, "trial", 1)),
         "trial 0 is not the record"),
    Case("results.json best epoch 0", "--resume", edit_json("results.json", in_trial(0, "best_epoch", 0)),
         "no best epoch in 1..2"),
    Case("results.json best epoch a string", "--eval_only", edit_json("results.json", in_trial(0, "best_epoch", "1")),
         "no best epoch in 1..2"),
    Case("results.json best epoch past the epochs", "--resume", edit_json("results.json", in_trial(0, "best_epoch", 3)),
         "no best epoch in 1..2"),
    Case("results.json summary null", "--resume", edit_json("results.json", with_key("summary", None)),
         "'summary' is not the summary of its 1 trial(s)"),
    Case("results.json summary NaN", "--resume", edit_json("results.json", lambda r: {
        **r, "summary": {**r["summary"], "test_acc_mean": float("nan")}}), "(NaN is not strict JSON)"),
    Case("results.json summary of other trials", "--eval_only", edit_json("results.json", lambda r: {
        **r, "summary": {**r["summary"], "test_acc_mean": 1.0}}), "'summary' is not the summary"),
    Case("results.json complete with a trial to go", "--resume", edit_json("results.json", with_key("complete", True)),
         "'complete' is true with 1 of 2 trials"),
    Case("results.json of a finished run with summary null", "--resume", lambda folder: [
        edit_json("args.json", with_key("n_times", 1))(folder),
        edit_json("results.json", lambda r: {**r, "complete": True, "summary": None})(folder)],
         "'summary' is not the summary of its 1 trial(s)"),  # the path of a --run_name job run again
    Case("results.json with a field more", "--resume", edit_json("results.json", with_key("note", "x")),
         "its fields are complete, environment, experiment, note, summary, teacher, trials"),
    Case("results.json teacher a string", "--eval_only", edit_json("results.json", with_key("teacher", "bert")),
         "'teacher' is not an object"),
    Case("results.json trial without its checkpoint", "--resume", edit_json("results.json", lambda r: {
        **r, "trials": [{name: value for name, value in r["trials"][0].items() if name != "checkpoint"}]}),
         "trial 0's fields are best_epoch, seed, test, trial, val"),
    Case("results.json confusion not a table", "--eval_only",
         edit_json("results.json", in_trial(0, "confusion", [[1, 2]], "test")), "confusion is not a 6 x 6 table"),
    Case("results.json metrics with a field more", "--resume",
         edit_json("results.json", in_trial(0, "f2", 0.5, "val")), "val metrics: its fields are"),
    Case("results.json checkpoint a number", "--resume", edit_json("results.json", in_trial(0, "checkpoint", 5)),
         "no checkpoint"),
    Case("results.json test acc 2", "--resume", edit_json("results.json", in_trial(0, "acc", 2.0, "test")),
         "test metrics: acc is not a fraction in [0, 1]"),
    Case("results.json val acc a string", "--eval_only", edit_json("results.json", in_trial(0, "acc", "x", "val")),
         "val metrics: acc is not a fraction"),
    Case("results.json uar missing", "--resume", edit_json("results.json", in_trial(0, "uar", None, "test")),
         "uar is not a fraction"),
    Case("results.json cls loss NaN", "--resume", edit_json("results.json", in_trial(0, "cls_loss", float("nan"),
                                                                                    "val")),
         "(NaN is not strict JSON)"),
    Case("results.json cls loss a string", "--resume", edit_json("results.json", in_trial(0, "cls_loss", "0.5",
                                                                                         "val")),
         "cls_loss or latent_loss is not a finite number"),
    Case("results.json latent loss a list", "--eval_only",
         edit_json("results.json", in_trial(0, "latent_loss", [1], "test")), "cls_loss or latent_loss"),
    Case("results.json test metrics null", "--resume", edit_json("results.json", in_trial(0, "test", None)),
         "test metrics: not an object"),
    # The training state of the unfinished trial.
    Case("train_state.pt empty", "--resume", text(STATE, b""), "cannot read"),
    Case("train_state.pt truncated", "--resume", truncate(STATE), "cannot read"),
    Case("train_state.pt a list", "--resume", edit_torch(STATE, lambda state: [1, 2]), "lacks progress"),
    Case("train_state.pt without its optimizer", "--resume", edit_torch(STATE, without("optimizer")),
         "lacks optimizer"),
    Case("train_state.pt without random states", "--resume", edit_torch(STATE, without("random")), "lacks random"),
    Case("train_state.pt past the run's epochs", "--resume", edit_torch(STATE, progress_with("epoch", 5)),
         "no valid progress (epoch 5 of 2)"),
    Case("train_state.pt epoch a string", "--resume", edit_torch(STATE, progress_with("epoch", "1")),
         "no valid progress"),
    Case("train_state.pt rows not its epochs", "--resume", edit_torch(STATE, progress_with("rows", [])),
         "no valid progress"),
    Case("train_state.pt best epoch past its epoch", "--resume", edit_torch(STATE, progress_with("best_epoch", 2)),
         "no valid progress"),
    Case("train_state.pt of two processes", "--resume",
         edit_torch(STATE, lambda state: {**state, "random": state["random"] * 2}), "of 2 process(es), not of 1"),
    Case("train_state.pt of another student", "--resume",
         edit_torch(STATE, lambda state: {**state, "student": first_weight_resized(state["student"])}),
         "does not fit this trial (RuntimeError"),
    Case("train_state.pt optimizer of another student", "--resume",
         edit_torch(STATE, lambda state: {**state, "optimizer": {"state": {}, "param_groups": []}}),
         "does not fit this trial (ValueError"),
    # Checkpoints: the unfinished trial's best so far when a later epoch was saved (a resume tests it), a finished
    # one's (--eval_only).
    Case("best.pt missing on resume", "--resume", best_before_last(remove(LATEST_BEST)), "trial1/best.pt is missing"),
    Case("best.pt empty on resume", "--resume", best_before_last(text(LATEST_BEST, b"")), "cannot read"),
    Case("best.pt of another student on resume", "--resume",
         best_before_last(edit_torch(LATEST_BEST, first_weight_resized)), "does not fit the student"),
    # Every entry of the folder is of its kind.
    Case("a trial folder that is a file", "--resume", lambda folder: [shutil.rmtree(folder / "trial1"),
                                                                      (folder / "trial1").write_text("")],
         "trial1 is not a folder"),
    Case("a trial folder that is a file, evaluated", "--eval_only", lambda folder: [
        shutil.rmtree(folder / "trial0"), (folder / "trial0").write_text("")], "trial0 is not a folder"),
    Case("results.json a folder", "--resume", lambda folder: [(folder / "results.json").unlink(),
                                                              (folder / "results.json").mkdir()],
         "results.json is not a file"),
    Case("log.txt a folder", "--resume", lambda folder: [(folder / "log.txt").unlink(), (folder / "log.txt").mkdir()],
         "log.txt is not a file"),
    Case("the lock a folder", "--resume", lambda folder: [(folder / "lock").unlink(), (folder / "lock").mkdir()],
         "lock for writing (Is a directory); expected a run folder this user can write to, whose lock is a file"),
    Case("metrics.csv a folder", "--resume", lambda folder: [(folder / "trial1" / "metrics.csv").unlink(),
                                                             (folder / "trial1" / "metrics.csv").mkdir()],
         "metrics.csv is not a file"),
    Case("train_state.pt a folder", "--resume", lambda folder: [(folder / STATE).unlink(), (folder / STATE).mkdir()],
         "train_state.pt is not a file"),
    Case("best.pt a folder, evaluated", "--eval_only", lambda folder: [(folder / BEST).unlink(),
                                                                      (folder / BEST).mkdir()],
         "best.pt is not a file"),
    Case("tensorboard a file", "--resume", text("trial1/tensorboard", b""), "tensorboard is not a folder"),
    Case("best.pt missing", "--eval_only", remove(BEST), "trial0/best.pt is missing"),
    Case("best.pt empty", "--eval_only", text(BEST, b""), "cannot read"),
    Case("best.pt truncated", "--eval_only", truncate(BEST), "cannot read"),
    Case("best.pt without a weight", "--eval_only", edit_torch(BEST, lambda state: dict(list(state.items())[1:])),
         "does not fit the student"),
    Case("best.pt of another shape", "--eval_only", edit_torch(BEST, first_weight_resized), "does not fit"),
    Case("best.pt not a state_dict", "--eval_only", edit_torch(BEST, lambda state: [1]), "does not fit"),
    # The finished trial's split, which --eval_only tests on.
    Case("split.json missing", "--eval_only", remove("trial0/split.json"), "cannot read the recorded split"),
    Case("split.json not JSON", "--eval_only", text("trial0/split.json", b"{"), "cannot read the recorded split"),
    Case("split.json of unknown stems", "--eval_only",
         edit_json("trial0/split.json", lambda r: {**r, "test": [["nobody", 0]]}), "is not a [stem, label] pair"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_damaged_run_folder_is_refused_and_left_as_it_was(case, interrupted, tmp_path, capsys):
    folder = tmp_path / interrupted.name
    shutil.copytree(interrupted, folder)
    case.damage(folder)
    before = files(folder)
    code, _, err = run_in_process(A2T, [case.option, str(folder), "--output_dir", str(tmp_path / "out")], capsys)
    assert code == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert last_line(err).startswith(f"{A2T}: error: ") and case.expected in last_line(err), err[-3000:]
    assert files(folder) == before  # refused: nothing changed
    assert not (tmp_path / "out").exists()  # a failed evaluation leaves no folder, nor the folders above it


@contextmanager
def held_by_another_process(folder: Path) -> Iterator[int]:
    """`folder` locked by a child process (a POSIX lock never stops its own process), until the block ends."""
    ready, done = os.pipe(), os.pipe()
    child = os.fork()
    if child == 0:
        try:
            with locked_run_folder(folder):
                os.write(ready[1], b"1")
                os.read(done[0], 1)
        finally:
            os._exit(0)
    os.read(ready[0], 1)
    try:
        yield child
    finally:
        os.write(done[1], b"1")
        os.waitpid(child, 0)


def test_a_second_command_on_a_running_folder_is_refused_at_once_naming_the_holder(interrupted, tmp_path, capsys):
    folder = tmp_path / interrupted.name
    shutil.copytree(interrupted, folder)
    before = files(folder)
    with held_by_another_process(folder) as holder:
        assert (folder / "lock").read_text() == f"{socket.gethostname()} {holder}\n"
        code, _, err = run_in_process(A2T, ["--resume", str(folder)], capsys)
        assert code == 2 and f"is in use by process {holder} on {socket.gethostname()}" in last_line(err)
        assert files(folder) == {**before, "lock": (folder / "lock").read_bytes()}
    assert files(folder) == before  # released: the lock names nobody
    code, out, err = run_in_process(A2T, ["--resume", str(folder)], capsys)  # released: it continues
    assert code == 0, err[-3000:]
    assert "Trial 2/2 (seed 1235), resumed after epoch 1" in out
    # The run's own record stays; the resume is recorded apart.
    started, resumed = json.loads(before["args.json"]), json.loads((folder / "args.json").read_text())
    assert resumed.pop("resumed") == [{"argv": sys.argv, "git_commit": started["git_commit"], "at": ANY}]
    assert resumed == started


def test_a_filesystem_that_cannot_lock_refuses_every_command_and_changes_nothing(interrupted, a2t_argv, tmp_path,
                                                                                 capsys, monkeypatch):
    folder = tmp_path / interrupted.name
    shutil.copytree(interrupted, folder)
    before = files(folder)

    def no_locks(*args: Any) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "lockf", no_locks)
    code, _, err = run_in_process(A2T, ["--resume", str(folder)], capsys)
    assert code == 2 and f"cannot lock {folder / 'lock'} (ENOLCK: No locks available)" in last_line(err)
    assert files(folder) == before
    new = [*a2t_argv, "--output_dir", str(tmp_path / "new")]
    for argv in (new, [*new, "--run_name", "named"]):
        code, _, err = run_in_process(A2T, argv, capsys)
        assert code == 2 and "so a second command on the run could not be kept out" in last_line(err)
        assert not (tmp_path / "new").exists()  # the folder it made, and those above it, are gone


def named(folder: Path, tmp_path: Path) -> Path:
    """A copy of the run `folder` as the run --run_name NAME of <tmp_path>/out."""
    copy = tmp_path / "out" / "IEMOCAP_A2T" / "NAME"
    shutil.copytree(folder, copy)
    edit_json("args.json", with_key("run_name", "NAME"))(copy)
    return copy


def test_a_refusal_under_run_name_speaks_of_run_name(interrupted, tmp_path, capsys):
    folder = named(interrupted, tmp_path)
    before = files(folder)
    for change, expected in ((["--lam", "0.5"], "--lam 0.5 differs from the run's 0.3"),
                             (["--epochs", "3"], "--epochs 3, but trial(s) 1 finished with 2 epochs")):
        code, _, err = run_in_process(A2T, ["--run_name", "NAME", "--output_dir", str(tmp_path / "out"), *change],
                                      capsys)
        assert code == 2 and last_line(err).startswith(f"{A2T}: error: --run_name NAME ({folder}): "), err[-3000:]
        assert expected in last_line(err) and "--resume" not in last_line(err)
    assert files(folder) == before


def test_a_run_name_that_is_a_file_is_refused(a2t_argv, tmp_path, capsys):
    (tmp_path / "out" / "IEMOCAP_A2T").mkdir(parents=True)
    (tmp_path / "out" / "IEMOCAP_A2T" / "NAME").write_text("notes")
    code, _, err = run_in_process(A2T, [*a2t_argv, "--output_dir", str(tmp_path / "out"), "--run_name", "NAME"],
                                  capsys)
    assert code == 2 and "--run_name NAME: " in last_line(err) and "NAME is a file" in last_line(err)
    assert (tmp_path / "out" / "IEMOCAP_A2T" / "NAME").read_text() == "notes"


def test_more_epochs_are_refused_once_a_trial_has_finished(interrupted, tmp_path, capsys):
    folder = tmp_path / interrupted.name
    shutil.copytree(interrupted, folder)
    before = files(folder)
    code, _, err = run_in_process(A2T, ["--resume", str(folder), "--epochs", str(EPOCHS + 1)], capsys)
    assert code == 2 and f"--resume {folder}: --epochs {EPOCHS + 1}, but trial(s) 1 finished with {EPOCHS} epochs; " \
                         f"expected --epochs {EPOCHS}" in last_line(err)
    assert files(folder) == before
