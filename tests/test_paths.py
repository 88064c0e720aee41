"""Every path the README documents, for the four experiments: the table below has a cell per mode and script, either
"run" (a test runs the script end to end on tiny data and asserts what the README says of that mode) or the reason
the mode does not apply to the script. Each row's test follows the table, in its order.

One process: each cell runs the script's main() in this process; a row's test compares with the script's tiny run
left alone (`reference`) where the README promises equality. torchrun: two launches of 2 processes
(tests/torchrun_commands.py runs several commands in the same processes) hold every torchrun cell: the first trains
each script, evaluates it and copies its folder as a kill in epoch 2 would leave it, then kills T->A's first process
(SIGKILL) in epoch 2; the second continues the killed run and resumes the copies, then fails on purpose inside a
training step of its second process.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import AVMNIST_A2V
import AVMNIST_V2A
import IEMOCAP_A2T
import IEMOCAP_T2A
from tests.helpers import (
    REPO,
    assert_same_outcome,
    files_of,
    interrupt_at_step,
    last_line,
    rows_of,
    run_in_process,
    the_run,
)

RUN = "run"
AVMNIST_ONLY = "an AVMNIST option: IEMOCAP's data has no such variant"
TEN_DIGITS = "an IEMOCAP option: AVMNIST has its ten digits"
FIXED_SPLIT = "an IEMOCAP option: AVMNIST's test split is fixed"
NO_WAVS = "A->V's teacher reads the spoken digits, which MultiBench's layout lacks (the README: V->A only)"
RESNETS = "an IEMOCAP option (its wav2vec2 and BERT students recompute activations; the ResNets have none)"

SCRIPTS = {"V2A": AVMNIST_V2A, "A2V": AVMNIST_A2V, "T2A": IEMOCAP_T2A, "A2T": IEMOCAP_A2T}
PATHS = {
    # mode                       V2A          A2V          T2A           A2T
    "train":                    (RUN,         RUN,         RUN,          RUN),
    "kill and resume":          (RUN,         RUN,         RUN,          RUN),
    "--eval_only":              (RUN,         RUN,         RUN,          RUN),
    "--compile":                (RUN,         RUN,         RUN,          RUN),
    "--amp bf16":               (RUN,         RUN,         RUN,          RUN),
    "--lam 0":                  (RUN,         RUN,         RUN,          RUN),
    "--teacher_cache off":      (RUN,         RUN,         RUN,          RUN),
    "--cache_dir":              (RUN,         RUN,         RUN,          RUN),
    "--pairing paired":         (RUN,         RUN,         RUN,          RUN),
    "--gradient_checkpointing": (RESNETS,     RESNETS,     RUN,          RUN),
    "--deterministic":          (RUN,         RUN,         RUN,          RUN),
    "--tensorboard":            (RUN,         RUN,         RUN,          RUN),
    "--run_name":               (RUN,         RUN,         RUN,          RUN),
    "--pca false":              (RUN,         RUN,         AVMNIST_ONLY, AVMNIST_ONLY),
    "MultiBench layout":        (RUN,         NO_WAVS,     AVMNIST_ONLY, AVMNIST_ONLY),
    "--classes 4":              (TEN_DIGITS,  TEN_DIGITS,  RUN,          RUN),
    "--split session":          (FIXED_SPLIT, FIXED_SPLIT, RUN,          RUN),
    "torchrun: train":          (RUN,         RUN,         RUN,          RUN),
    "torchrun: kill and resume": (RUN,        RUN,         RUN,          RUN),
    "torchrun: --eval_only":    (RUN,         RUN,         RUN,          RUN),
}
TAGS = {"V2A": "AVMNIST V->A", "A2V": "AVMNIST A->V", "T2A": "IEMOCAP T->A", "A2T": "IEMOCAP A->T"}
# A tiny run: 2 epochs of 1 step (AVMNIST: 4 items a split, the 112x112 student costs most) or 2 steps (IEMOCAP: 8).
ITEMS = {"V2A": 4, "A2V": 4, "T2A": 8, "A2T": 8}
STEPS = {"V2A": 1, "A2V": 1, "T2A": 2, "A2T": 2}
STEPS_TORCHRUN = 3  # training steps an epoch of T->A's torchrun runs (24 items, batches of 8)


def cells(mode: str) -> list[str]:
    """The scripts that `mode` applies to."""
    return [name for name, cell in zip(SCRIPTS, PATHS[mode]) if cell == RUN]


def test_every_cell_is_run_or_says_why_not():
    for mode, row in PATHS.items():
        assert len(row) == len(SCRIPTS) and all(isinstance(cell, str) and cell for cell in row), mode
    tested = {name.removeprefix("test_") for name in globals() if name.startswith("test_")} | {
        name.removeprefix("test_") for name in vars(TestTorchrun) if name.startswith("test_")}
    assert {mode_test(mode) for mode in PATHS} <= tested


def mode_test(mode: str) -> str:
    """The name of a row's test, without "test_": "--amp bf16" -> "amp_bf16", "torchrun: train" -> "torchrun_train"."""
    return re.sub(r"[^a-z0-9]+", "_", mode.lower()).strip("_")


# --- comparing runs -------------------------------------------------------------------------------------------------


def relative(a, b) -> float:
    return abs(float(a) - float(b)) / max(abs(float(a)), 1e-12)


def within_samples(a, b, n: int, samples: int) -> bool:
    """Two accuracies over `n` samples that differ by at most `samples` predictions."""
    return round(abs(float(a) - float(b)) * n) <= samples


def split_sizes(folder: Path) -> dict[str, int]:
    split = json.loads((folder / "trial0" / "split.json").read_text())
    return {name: len(split[name]) for name in ("train", "val", "test")}


# --- one process -----------------------------------------------------------------------------------------------------


class Runs:
    """The scripts' tiny runs (`ITEMS`, `STEPS`), and each script's run left alone."""

    def __init__(self, avmnist: Path, iemocap: Path, models: dict[str, str], tmp: Path) -> None:
        self.avmnist, self.iemocap, self.models, self.tmp = avmnist, iemocap, models, tmp
        self.references: dict[str, Path] = {}
        self.continuations: dict[str, tuple[Path, str, str]] = {}
        self.made = 0

    def data(self, name: str) -> list[str]:
        """The script's data and tiny models."""
        if name in ("V2A", "A2V"):
            return ["--data_root", str(self.avmnist), "--teacher_path", self.models["resnet18" if name == "V2A" else
                                                                                   "wav2vec2"]]
        teacher, student = ("bert", "wav2vec2") if name == "T2A" else ("wav2vec2", "bert")
        return ["--audio_dir", str(self.iemocap), "--text_dir", str(self.iemocap / "IEMOCAP" / "texts"),
                "--teacher_path", self.models[teacher], "--student_path", self.models[student], "--warmup_epochs", "0"]

    def argv(self, name: str) -> list[str]:
        return [*self.data(name), "--subset", str(ITEMS[name]), "--batch_size", "4", "--epochs", "2",
                "--n_times", "1", "--learning_rate", "3e-3"]

    def folder(self, label: str) -> Path:
        """A new output folder."""
        self.made += 1
        return self.tmp / f"{self.made}_{label}"

    def cache(self, name: str) -> Path:
        return self.tmp / f"cache_{name}"

    def reference(self, name: str, capsys: pytest.CaptureFixture) -> Path:
        """The script's tiny run left alone (run once); it keeps its teacher features in `cache(name)`."""
        if name not in self.references:
            out = self.folder(f"reference_{name}")
            code, _, err = run_in_process(SCRIPTS[name].SCRIPT + ".py", [*self.argv(name), "--cache_dir",
                                                                         str(self.cache(name)), "--output_dir",
                                                                         str(out)], capsys)
            assert code == 0, err[-3000:]
            assert re.search(r"teacher features: \d+ computed in", err)
            self.references[name] = the_run(out)
        return self.references[name]

    def continued(self, name: str, capsys: pytest.CaptureFixture) -> tuple[Path, str, str]:
        """The script's tiny run as the job `--run_name sweep_lam0.3`, stopped by Ctrl-C in epoch 2, then continued
        (run once): by `--resume RUN_DIR` (AVMNIST) or by the same command again, as a requeued job (IEMOCAP; T->A with
        a DataLoader worker). Returns its folder and the stderr of the interruption and the stdout of the
        continuation."""
        if name not in self.continuations:
            out = self.folder("named")
            command = [*self.argv(name), "--run_name", "sweep_lam0.3", "--output_dir", str(out)]
            with pytest.MonkeyPatch.context() as patch:
                interrupt_at_step(patch, STEPS[name] + 1)
                code, _, interrupted = run_in_process(SCRIPTS[name].SCRIPT + ".py", command, capsys)
            assert code == 130
            folder = out / SCRIPTS[name].SCRIPT / "sweep_lam0.3"
            again = ["--resume", str(folder)] if name in ("V2A", "A2V") else command
            workers = ["--num_workers", "1"] if name == "T2A" else []
            code, continued, err = run_in_process(SCRIPTS[name].SCRIPT + ".py", [*again, *workers], capsys)
            assert code == 0, err[-3000:]
            self.continuations[name] = folder, interrupted, continued
        return self.continuations[name]

    def run(self, name: str, label: str, *options: str, capsys: pytest.CaptureFixture,
            argv: list[str] | None = None) -> tuple[Path, str, str]:
        """A run of the script's tiny command (or `argv`) with `options`, which must succeed: (its folder, stdout,
        stderr)."""
        out = self.folder(label)
        argv = self.argv(name) if argv is None else argv
        code, stdout, stderr = run_in_process(SCRIPTS[name].SCRIPT + ".py", [*argv, *options, "--output_dir", str(out)],
                                              capsys)
        assert code == 0, stderr[-3000:]
        return the_run(out), stdout, stderr


@pytest.fixture(scope="module")
def runs(avmnist, iemocap, tiny_models, tmp_path_factory):
    return Runs(avmnist, iemocap, tiny_models, tmp_path_factory.mktemp("paths"))


# The README's commands with a budget the tiny models learn in (chance is 10 % for AVMNIST, 17 % for IEMOCAP).
README = {
    "V2A": ["--epochs", "30", "--learning_rate", "1e-3", "--batch_size", "32", "--optim", "adam", "--lam", "0.3",
            "--lr_decay_step", "25", "--lr_decay_ratio", "0.1", "--mj_model", "resnet18", "--n_times", "3",
            "--random_seed", "42"],
    "T2A": ["--epochs", "30", "--learning_rate", "5e-5", "--batch_size", "4", "--optim", "adam", "--lam", "0.3",
            "--n_times", "3", "--random_seed", "1234", "--language_model", "bert"],
}
README["A2V"] = README["V2A"]  # the README passes --mj_model resnet18 to A->V too (it falls back to base)
README["A2T"] = [*README["T2A"][:-2], "--mj_model", "base"]
LEARNING_BUDGET = {
    # One step an epoch at the README's batch of 32: the precise BatchNorm statistics make evaluation reflect what
    # the ResNet learned (tests/test_precise_bn.py: without them it falls to chance).
    "V2A": ["--epochs", "2", "--n_times", "1", "--subset", "32"],
    "A2V": ["--epochs", "2", "--n_times", "1", "--subset", "32"],
    # Tiny random models need a larger step and a few epochs; the original warm-up would spend them at lr 0.
    "T2A": ["--epochs", "6", "--learning_rate", "3e-3", "--batch_size", "8", "--warmup_epochs", "0", "--n_times", "1"],
    "A2T": ["--epochs", "6", "--learning_rate", "3e-3", "--batch_size", "8", "--warmup_epochs", "0", "--n_times", "2"],
}


@pytest.mark.parametrize("name", cells("train"))
def test_train(name, runs, capsys):
    # The README command with a budget that learns: the lines it prints, the files of its folder, learning.
    folder, out, err = runs.run(name, "train", *README[name], *runs.data(name), *LEARNING_BUDGET[name],
                                capsys=capsys, argv=[])
    lines = out.splitlines()
    assert lines[0] == f"Run folder: {folder}" and folder.parent.name == SCRIPTS[name].SCRIPT
    assert re.fullmatch(rf"Overall test acc: \d+\.\d\d ± \d+\.\d\d {re.escape(TAGS[name])}", lines[-1])
    assert (folder / "log.txt").read_text().splitlines() == lines
    args = json.loads((folder / "args.json").read_text())
    results = json.loads((folder / "results.json").read_text())
    n_times = args["n_times"]
    assert results["complete"] is True and results["summary"]["n"] == n_times
    assert [trial["seed"] for trial in results["trials"]] == [args["random_seed"] + k for k in range(n_times)]
    assert results["teacher"] == {"name": {"V2A": "resnet18", "A2V": "wav2vec2-base", "T2A": "bert",
                                           "A2T": "wav2vec2-base"}[name], "source": args["teacher_path"],
                                  "random_init": False, "dim": args["feature_dim"]}
    assert args["feature_dim"] == (512 if name == "V2A" else 32) and args["lam"] == 0.3
    assert not list(folder.rglob("train_state.pt"))  # finished trials need none
    columns = ["epoch", "lr", "train_cls", "train_latent", "train_acc", "val_cls", "val_latent", "val_acc",
               "train_seconds", "epoch_seconds"]
    metrics = ["acc", "cls_loss", "latent_loss"] + (["uar", "macro_f1", "confusion"] if name in ("T2A", "A2T") else [])
    for k, trial in enumerate(results["trials"]):
        rows = rows_of(folder, k)
        assert list(rows[0]) == columns and [int(row["epoch"]) for row in rows] == list(range(1, args["epochs"] + 1))
        assert float(rows[-1]["train_cls"]) < float(rows[0]["train_cls"])  # the training loss goes down
        assert set(trial["test"]) == set(metrics) and trial["test"]["latent_loss"] > 0
        assert 1 <= trial["best_epoch"] <= args["epochs"]
        student = torch.load(folder / f"trial{k}" / "best.pt", weights_only=True)
        assert student[{"V2A": "head.2.weight", "A2V": "head.2.weight", "T2A": "head.2.weight",
                        "A2T": "head.weight"}[name]].shape[0] == args.get("classes", 10)
    assert all(trial["test"]["acc"] > 0.4 for trial in results["trials"])  # it learned
    if n_times > 1:
        assert results["trials"][0]["test"] != results["trials"][1]["test"]  # each trial seeded on its own
    sizes = split_sizes(folder)
    expected = {"V2A": [32, 9, 32], "A2V": [32, 9, 32], "T2A": [96, 12, 12], "A2T": [90, 12, 18]}[name]
    assert [sizes[split] for split in ("train", "val", "test")] == expected  # AVMNIST: 90 % of 90; T->A 80/10/10
    if name in ("T2A", "A2T"):
        stem, label = json.loads((folder / "trial0" / "split.json").read_text())["train"][0]
        assert stem.startswith("Ses0") and 0 <= label < 6
        assert all(len(row) == 6 for row in results["trials"][0]["test"]["confusion"])


@pytest.mark.parametrize("name", cells("kill and resume"))
def test_kill_and_resume(name, runs, capsys):
    # Ctrl-C in epoch 2, then --resume RUN_DIR (AVMNIST) or the same --run_name command again (IEMOCAP): the results of
    # the run left alone, bit for bit. T->A's student draws noise, time masks and LayerDrop from the global
    # generators; it continues with a DataLoader worker, which changes no number.
    folder, interrupted, continued = runs.continued(name, capsys)
    assert "interrupted: continue with the same command" in interrupted  # a named run: the job requeued as it is
    seed = json.loads((folder / "args.json").read_text())["random_seed"]
    assert f"Trial 1/1 (seed {seed}), resumed after epoch 1" in continued
    assert not list(folder.rglob("train_state.pt"))
    assert_same_outcome(folder, runs.reference(name, capsys))


@pytest.mark.parametrize("name", cells("--eval_only"))
def test_eval_only(name, runs, capsys):
    # Each finished trial's best.pt tested again on its recorded split: the run's own test numbers (CPU), in a folder
    # of its own; the run's files are not touched.
    run = runs.reference(name, capsys)
    before = files_of(run)
    out = runs.folder("evaluation")
    code, stdout, err = run_in_process(SCRIPTS[name].SCRIPT + ".py", ["--eval_only", str(run), "--output_dir",
                                                                      str(out)], capsys)
    assert code == 0, err[-3000:]
    assert files_of(run) == before
    (evaluation,) = out.rglob("eval.json")
    assert evaluation.parent.name.endswith("_eval")
    evaluated, recorded = json.loads(evaluation.read_text()), json.loads((run / "results.json").read_text())
    assert [t["test"] for t in evaluated["trials"]] == [t["test"] for t in recorded["trials"]]
    assert evaluated["summary"] == recorded["summary"] and evaluated["evaluated_run"] == str(run)
    logged = (run / "log.txt").read_text().splitlines()
    assert [line for line in stdout.splitlines() if line.startswith(("Test", "Overall"))] == \
        [line for line in logged if line.startswith(("Test", "Overall"))]


def test_eval_only_of_a_run_without_finished_trials_is_refused(avmnist, tmp_path, capsys):
    run = tmp_path / "AVMNIST_A2V" / "20261129-000000_seed42"
    run.mkdir(parents=True)
    args = AVMNIST_A2V.parse_args(["--data_root", str(avmnist), "--lam", "0"])
    (run / "args.json").write_text(json.dumps({name: value for name, value in vars(args).items() if name != "earlier"}))
    (run / "results.json").write_text(json.dumps({"experiment": "AVMNIST A->V", "teacher": None, "trials": [],
                                                  "summary": None, "complete": False, "environment": {}}))
    code, _, err = run_in_process("AVMNIST_A2V.py", ["--eval_only", str(run), "--output_dir", str(tmp_path)], capsys)
    assert code == 2 and "no trial of the run has finished" in last_line(err)


@pytest.fixture
def aot_eager(monkeypatch):
    """--compile with the aot_eager backend: the same graph capture, AOT autograd and compiled backward as inductor,
    without its code generation (inductor takes half a minute even for a tiny model; benchmarks/step_cost.py times
    it). Dynamo's counters are cleared, to be read after the run."""
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model: compile_(model, backend="aot_eager"))
    torch._dynamo.utils.counters.clear()
    yield torch._dynamo.utils.counters


# The graph breaks a compiled student may take: the wav2vec2 student's draws on the host (time masks, LayerDrop),
# kept out of its graphs on purpose (dynamo then leaves the encoder's loop to Python and compiles each layer alone).
HOST_DRAWS = {"T2A": ("Wav2Vec2AudioStudent.time_masked_frames ", "Wav2Vec2AudioStudent.layer_dropped ")}


@pytest.mark.parametrize("name", cells("--compile"))
def test_compile(name, runs, aot_eager, capsys):
    # The step compiles without a graph break but the wav2vec2 student's host draws, and with no graph left to eager
    # code; best.pt stays the plain student's state_dict. The ResNet students draw no random numbers: compiled, they
    # give the eager numbers up to rounding; with aot_eager's eager kernels in the captured graphs, within 1e-4
    # relative after 2 steps and the same predictions (inductor's own kernels round otherwise, and training amplifies
    # that: the README's numbers). With inductor the IEMOCAP students draw dropout and noise from compiled code's own
    # random stream (the README).
    folder, _, err = runs.run(name, "compiled", "--compile", capsys=capsys)
    assert "Traceback" not in err and "Warning" not in err and "failed" not in err
    assert aot_eager["aot_autograd"]["ok"] == aot_eager["aot_autograd"]["total"] > 0  # no graph fell back
    assert all(any(draw in reason for draw in HOST_DRAWS.get(name, ())) for reason in aot_eager["graph_break"])
    assert not [key for key in torch.load(folder / "trial0" / "best.pt", weights_only=True) if "_orig_mod" in key]
    rows = rows_of(folder)
    assert all(np.isfinite(float(row[column])) for row in rows for column in ("train_cls", "val_cls"))
    if name in ("V2A", "A2V"):
        for a, b in zip(rows_of(runs.reference(name, capsys)), rows, strict=True):
            for column in ("train_cls", "train_latent", "val_cls", "val_latent"):
                assert relative(a[column], b[column]) <= 1e-4, column
            assert a["train_acc"] == b["train_acc"] and a["val_acc"] == b["val_acc"]


@pytest.mark.parametrize("name", cells("--amp bf16"))
def test_amp_bf16(name, runs, capsys):
    # bf16 autocast on the CPU: the run finishes with finite numbers, other than float32's.
    folder, _, _ = runs.run(name, "bf16", "--amp", "bf16", capsys=capsys)
    rows, reference = rows_of(folder), rows_of(runs.reference(name, capsys))
    assert all(np.isfinite(float(row[column])) for row in rows for column in ("train_cls", "train_latent", "val_cls"))
    assert rows[0]["train_cls"] != reference[0]["train_cls"]


@pytest.mark.parametrize("name", cells("--lam 0"))
def test_lam_0(name, runs, capsys):
    # The student alone, no latent loss, and no teacher loaded: without --teacher_path the default one would be
    # loaded from the hub or torchvision, which fails offline.
    argv = runs.argv(name)
    teacher = argv.index("--teacher_path")
    folder, out, _ = runs.run(name, "lam0", "--lam", "0", capsys=capsys, argv=argv[:teacher] + argv[teacher + 2:])
    results = json.loads((folder / "results.json").read_text())
    assert results["teacher"] is None and results["trials"][0]["test"]["latent_loss"] is None
    assert "latent: -" in out and all(row["train_latent"] == "" for row in rows_of(folder))


@pytest.mark.parametrize("name", cells("--teacher_cache off"))
def test_teacher_cache_off(name, runs, capsys):
    # The teacher runs in the loop on each batch's inputs: the features of the cache, which computes them one input at
    # a time, up to rounding (batched kernels), so the same training up to rounding, which training amplifies:
    # measured up to 1.9e-3 relative (A->V's validation loss after 2 steps), hence 1e-2, and accuracies within one
    # sample (a prediction with a margin that small may flip).
    folder, _, err = runs.run(name, "cache_off", "--teacher_cache", "off", capsys=capsys)
    assert "teacher features:" not in err  # no cache built
    for a, b in zip(rows_of(runs.reference(name, capsys)), rows_of(folder), strict=True):
        for column in ("train_cls", "train_latent", "val_cls", "val_latent"):
            assert relative(a[column], b[column]) <= 1e-2, column
        for column in ("train_acc", "val_acc"):
            assert within_samples(a[column], b[column], ITEMS[name], 1), column


@pytest.mark.parametrize("name", cells("--cache_dir"))
def test_cache_dir(name, runs, capsys):
    # Features kept on disk (by the run left alone): a later run reads them instead of running the teacher, and gets
    # the same numbers bit for bit (each feature computed from its input alone); the other rows' runs, without a
    # cache on disk, give them too.
    reference = runs.reference(name, capsys)
    later, _, err = runs.run(name, "cache_dir", "--cache_dir", str(runs.cache(name)), capsys=capsys)
    assert re.search(rf"teacher features: \d+ loaded from {re.escape(str(runs.cache(name)))}", err)
    assert "computed" not in err
    assert_same_outcome(later, reference)


@pytest.mark.parametrize("name", cells("--pairing paired"))
def test_pairing_paired(name, runs, capsys):
    # The ablation: the teacher reads the sample's own other modality, so other latent targets than unpaired ones.
    folder, _, _ = runs.run(name, "paired", "--pairing", "paired", capsys=capsys)
    assert json.loads((folder / "args.json").read_text())["pairing"] == "paired"
    paired, unpaired = rows_of(folder)[0], rows_of(runs.reference(name, capsys))[0]
    assert paired["train_latent"] != unpaired["train_latent"]


@pytest.mark.parametrize("name", cells("--gradient_checkpointing"))
def test_gradient_checkpointing(name, runs, capsys):
    # Activations computed again in the backward pass (the same draws again: non-reentrant): the same results.
    folder, _, _ = runs.run(name, "checkpointing", "--gradient_checkpointing", capsys=capsys)
    assert_same_outcome(folder, runs.reference(name, capsys))


@pytest.mark.parametrize("name", cells("--deterministic"))
def test_deterministic(name, runs, capsys):
    # Deterministic kernels; on the CPU the default ones already are: the same results.
    try:
        folder, _, _ = runs.run(name, "deterministic", "--deterministic", capsys=capsys)
    finally:
        torch.use_deterministic_algorithms(False)  # a process-wide setting: not for the tests after this one
    assert_same_outcome(folder, runs.reference(name, capsys))


TENSORBOARD = {"train/cls_loss": "train_cls", "train/latent_loss": "train_latent", "train/acc": "train_acc",
               "val/cls_loss": "val_cls", "val/latent_loss": "val_latent", "val/acc": "val_acc", "train/lr": "lr"}


@pytest.mark.parametrize("name", cells("--tensorboard"))
def test_tensorboard(name, runs, capsys):
    # Every epoch's scalars once, equal to metrics.csv; the smoothed loss every 10 steps of an epoch (A->T runs 11 an
    # epoch, the others fewer: none); the hyperparameters with the test accuracy. Logging changes no result.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from utils.tensorboard_log import SMOOTHING_STEPS

    steps = 11 if name == "A2T" else STEPS[name]
    argv = [*runs.argv(name), "--subset", str(4 * steps), "--batch_size", "4"] if name == "A2T" else None
    folder, _, _ = runs.run(name, "tensorboard", "--tensorboard", capsys=capsys, argv=argv)
    if argv is None:
        assert_same_outcome(folder, runs.reference(name, capsys))
    trial = json.loads((folder / "results.json").read_text())["trials"][0]
    events = EventAccumulator(str(folder / "trial0" / "tensorboard"))
    events.Reload()
    rows = rows_of(folder)
    for tag, column in TENSORBOARD.items():
        logged = events.Scalars(tag)
        assert [event.step for event in logged] == [1, 2], tag  # each epoch once
        assert [event.value for event in logged] == pytest.approx([float(row[column]) for row in rows],
                                                                  rel=1e-6), tag  # stored as float32
    smoothed = [event.step for event in events.Scalars("train/loss_smoothed")] if steps >= SMOOTHING_STEPS else []
    assert smoothed == [(epoch - 1) * steps + SMOOTHING_STEPS for epoch in (1, 2) if steps >= SMOOTHING_STEPS]
    assert len(events.Scalars("train/samples_per_second")) == 2
    assert events.Scalars("hparam/test_acc")[0].value == pytest.approx(trial["test"]["acc"], rel=1e-6)
    assert {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(
        events.PluginTagToContent("hparams"))


@pytest.mark.parametrize("name", cells("--run_name"))
def test_run_name(name, runs, capsys):
    # A job that finds its run: the folder is <output_dir>/<script>/NAME, and the same command again continues it
    # (`test_kill_and_resume`); once more, on the finished run, it says so, prints the summary and writes nothing.
    folder, _, continued = runs.continued(name, capsys)
    assert continued.startswith(f"Run folder: {folder}\n") and folder.parent.name == SCRIPTS[name].SCRIPT
    before = files_of(folder)
    command = [*runs.argv(name), "--run_name", folder.name, "--output_dir", str(folder.parent.parent)]
    code, stdout, _ = run_in_process(SCRIPTS[name].SCRIPT + ".py", command, capsys)
    assert code == 0 and "Every trial of the run finished before; nothing to train" in stdout
    assert last_line(stdout) == (folder / "log.txt").read_text().splitlines()[-1]
    assert files_of(folder) == before


@pytest.mark.parametrize("name", cells("--pca false"))
def test_pca_false(name, runs, capsys):
    # The raw images instead of the PCA ones (the student's for A->V, the teacher's for V->A): other numbers.
    folder, _, _ = runs.run(name, "pca_false", "--pca", "false", capsys=capsys)
    assert json.loads((folder / "args.json").read_text())["pca"] is False
    column = "train_cls" if name == "A2V" else "train_latent"
    assert rows_of(folder)[0][column] != rows_of(runs.reference(name, capsys))[0][column]


@pytest.mark.parametrize("name", cells("MultiBench layout"))
def test_multibench_layout(name, runs, tmp_path_factory, capsys):
    from datasets.tools.synthetic import write_synthetic_avmnist

    multibench = write_synthetic_avmnist(tmp_path_factory.mktemp("multibench"), n_train=30, n_test=10,
                                         layout="multibench")
    argv = runs.argv(name)
    argv[argv.index("--data_root") + 1] = str(multibench)
    folder, out, _ = runs.run(name, "multibench", capsys=capsys, argv=argv)
    assert out.splitlines()[-1].endswith(TAGS[name]) and split_sizes(folder)["train"] == ITEMS[name]


@pytest.mark.parametrize("name", cells("--classes 4"))
def test_classes_4(name, runs, capsys):
    # exc merged into hap, fru dropped: 4 labels, a 4 x 4 confusion.
    folder, _, _ = runs.run(name, "classes4", "--classes", "4", capsys=capsys)
    split = json.loads((folder / "trial0" / "split.json").read_text())
    assert {label for items in (split["train"], split["val"], split["test"]) for _, label in items} <= set(range(4))
    confusion = json.loads((folder / "results.json").read_text())["trials"][0]["test"]["confusion"]
    assert len(confusion) == 4 and all(len(row) == 4 for row in confusion)


@pytest.mark.parametrize("name", cells("--split session"))
def test_split_session(name, runs, capsys):
    # Session5 is the test split, Session4 validation, the others training (the first 8 items of each: Session 1's).
    folder, _, _ = runs.run(name, "session", "--split", "session", capsys=capsys)
    split = json.loads((folder / "trial0" / "split.json").read_text())
    sessions = {part: {stem[:5] for stem, _ in split[part]} for part in ("train", "val", "test")}
    assert sessions["train"] <= {"Ses01", "Ses02", "Ses03"} and sessions["val"] == {"Ses04"}
    assert sessions["test"] == {"Ses05"}


def test_a_random_teacher_is_announced_and_recorded(runs, capsys):
    argv = runs.argv("V2A")
    argv[argv.index("--teacher_path") + 1] = "random"
    folder, _, err = runs.run("V2A", "random_teacher", capsys=capsys, argv=argv)
    assert "randomly initialised" in err
    assert json.loads((folder / "results.json").read_text())["teacher"]["random_init"] is True


def test_an_error_inside_torch_ends_the_run_with_one_line_naming_the_step(runs, monkeypatch, capsys):
    # Not the tail of a long message: what failed, where, its first line, and the file that keeps the traceback
    # (the trial's folder); exit 1.
    original = torch.optim.Adam.step

    def step(self, *args, **kwargs):
        if self.state and not step.failed:
            step.failed = True
            raise RuntimeError("Expected to have finished reduction in the prior iteration\nIn addition, you can set")
        return original(self, *args, **kwargs)

    step.failed = False
    monkeypatch.setattr(torch.optim.Adam, "step", step)
    out = runs.folder("failing")
    code, _, err = run_in_process("IEMOCAP_A2T.py", [*runs.argv("A2T"), "--output_dir", str(out)], capsys)
    trial = the_run(out) / "trial0"
    assert code == 1 and last_line(err) == (
        "IEMOCAP_A2T.py: error: training step 2 of epoch 1 failed: RuntimeError: Expected to have finished reduction "
        f"in the prior iteration (traceback in {trial / 'error_process0.txt'})")
    assert "Traceback" not in err
    kept = (trial / "error_process0.txt").read_text()
    assert "Traceback (most recent call last)" in kept and "In addition, you can set" in kept


# --- torchrun ------------------------------------------------------------------------------------------------------


def torchrun(plan: list[dict], folder: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """One torchrun launch of 2 processes running the commands of `plan` in turn (tests/torchrun_commands.py)."""
    path = folder / f"plan{len(list(folder.glob('plan*.json')))}.json"
    path.write_text(json.dumps(plan))
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(REPO / "tests" / "torchrun_commands.py"), str(path)], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)


class Launches:
    """The two launches and what their commands left: each command's folders and per-process output."""

    def __init__(self, folder: Path, argv: dict[str, list[str]]) -> None:
        self.folder, self.argv = folder, argv

    def out(self, label: str) -> Path:
        return self.folder / label

    def command(self, name: str, label: str, argv: list[str], **extra) -> dict:
        return {"script": SCRIPTS[name].SCRIPT + ".py", "argv": argv, "out": str(self.out(label)), **extra}

    def alone(self, name: str) -> Path:
        return self.out("runs") / SCRIPTS[name].SCRIPT / "alone"

    def copy(self, name: str) -> Path:
        return self.out("copies") / name

    def killed(self) -> Path:
        return self.out("runs") / "IEMOCAP_T2A" / "killed"

    def stdout(self, label: str, rank: int = 0) -> str:
        return Path(f"{self.out(label)}.rank{rank}.stdout").read_text()

    def stderr(self, label: str, rank: int = 0) -> str:
        return Path(f"{self.out(label)}.rank{rank}.stderr").read_text()

    def code(self, label: str) -> list[int]:
        return [int(Path(f"{self.out(label)}.rank{rank}.code").read_text()) for rank in (0, 1)]


@pytest.fixture(scope="class")
def launches(avmnist, iemocap, tiny_models, deterministic_bert, tmp_path_factory):
    folder = tmp_path_factory.mktemp("torchrun")
    iemocap_data = ["--audio_dir", str(iemocap), "--text_dir", str(iemocap / "IEMOCAP" / "texts"), "--warmup_epochs",
                    "0", "--learning_rate", "3e-3", "--subset", "24", "--batch_size", "8"]
    budget = ["--epochs", "2", "--n_times", "1"]
    argv = {
        "V2A": ["--data_root", str(avmnist), "--teacher_path", tiny_models["resnet18"], "--subset", "8",
                "--batch_size", "8", *budget],
        "A2V": ["--data_root", str(avmnist), "--teacher_path", tiny_models["wav2vec2"], "--subset", "8",
                "--batch_size", "8", *budget],
        "T2A": [*iemocap_data, "--teacher_path", tiny_models["bert"], "--student_path", tiny_models["wav2vec2"],
                *budget],
        # A BERT student without dropout draws no random numbers in training: 2 processes compute what 1 does.
        "A2T": [*iemocap_data, "--teacher_path", tiny_models["wav2vec2"], "--student_path", deterministic_bert,
                *budget],
    }
    runs = Launches(folder, argv)
    named = ["--output_dir", str(runs.out("runs")), "--run_name"]
    first = []
    for name in SCRIPTS:
        copy = {"copy_after_epoch": [1, str(runs.copy(name))]} if name != "T2A" else {}
        cache = ["--cache_dir", str(runs.out("cache"))] if name == "A2T" else []
        first.append(runs.command(name, f"{name}_alone", [*argv[name], *cache, *named, "alone"], **copy))
        first.append(runs.command(name, f"{name}_eval", ["--eval_only", str(runs.alone(name)), "--output_dir",
                                                        str(runs.out(f"{name}_evaluation"))]))
    killed = runs.command("T2A", "T2A_killed", [*argv["T2A"], *named, "killed"], kill_at_step=STEPS_TORCHRUN + 1)
    runs.first = torchrun([*first, killed], folder)
    second = [runs.command("T2A", "T2A_requeued", [*argv["T2A"], *named, "killed"])]  # the same command again
    second += [runs.command(name, f"{name}_resumed", ["--resume", str(runs.copy(name))]) for name in SCRIPTS
               if name != "T2A"]
    runs.second = torchrun([*second, runs.command("A2T", "failing", [*argv["A2T"], "--output_dir",
                                                                     str(runs.out("failing_runs"))],
                                                  fail_at_step=1)], folder)
    return runs


@pytest.fixture(scope="class")
def deterministic_bert(tmp_path_factory):
    """A tiny BERT without dropout: a student whose training draws no random numbers, so that processes
    (which draw their own) cannot differ there."""
    from transformers import BertConfig, BertModel, BertTokenizer

    from models.pretrained import minilm_folder
    from models.tiny import TINY_BERT

    folder = tmp_path_factory.mktemp("bert_without_dropout")
    tokenizer = BertTokenizer.from_pretrained(minilm_folder())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                        **TINY_BERT)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


class TestTorchrun:
    """The torchrun cells: 2 processes (gloo on the CPU), two launches for all of them (`launches`)."""

    @pytest.mark.parametrize("name", cells("torchrun: train"))
    def test_torchrun_train(self, name, launches, runs, capsys):
        # One process prints and writes one run folder; args.json records the processes. The split, initial weights,
        # batch order and partners are those of one process: ResNets and a BERT without dropout train as one process
        # does up to rounding; a student that draws random numbers (T->A) draws them in each process.
        assert launches.code(f"{name}_alone") == [0, 0], launches.stderr(f"{name}_alone")[-3000:]
        run = launches.alone(name)
        assert launches.stdout(f"{name}_alone").count("Run folder: ") == 1 and not launches.stdout(f"{name}_alone", 1)
        recorded = json.loads((run / "args.json").read_text())["processes"]
        assert recorded["world_size"] == 2 and recorded["backend"] == "gloo"
        cache = ["--cache_dir", str(launches.out("cache_one"))] if name == "A2T" else []
        one, _, _ = runs.run(name, "one_process", *cache, capsys=capsys, argv=launches.argv[name])
        assert (one / "trial0" / "split.json").read_text() == (run / "trial0" / "split.json").read_text()
        sizes = split_sizes(one)
        first, second = (json.loads((folder / "results.json").read_text())["trials"][0] for folder in (one, run))
        if name in ("T2A", "A2T"):
            # Every test sample counted once, whatever the shares.
            assert np.array(second["test"]["confusion"]).sum() == sizes["test"]
        if name == "T2A":
            return
        # A ResNet's BatchNorm sums over shares of 4 instead of a batch of 8 differ in the last bits (3e-7 after the
        # first convolutions), which it amplifies from step to step: measured up to 3e-4 relative in the first epoch's
        # training loss (V->A with 2 steps an epoch), up to 1.6e-2 in the second epoch. BERT without dropout: 1e-7.
        # And amplified rounding flips a prediction now and then (one test sample of 32 on one machine of this kind):
        # accuracies within two samples.
        resnet = name in ("V2A", "A2V")
        for a, b in zip(rows_of(one), rows_of(run), strict=True):
            for column in ("train_cls", "train_latent", "val_cls", "val_latent"):
                first_epoch = a["epoch"] == "1" and "train" in column
                limit = (1e-3 if first_epoch else 5e-2) if resnet else 1e-5
                assert relative(a[column], b[column]) < limit, (a["epoch"], column, a[column], b[column])
            assert within_samples(a["train_acc"], b["train_acc"], sizes["train"], 2 if resnet else 1)
            assert within_samples(a["val_acc"], b["val_acc"], sizes["val"], 2 if resnet else 1)
        assert within_samples(first["test"]["acc"], second["test"]["acc"], sizes["test"], 2 if resnet else 1)
        if name == "A2T":
            # The teacher cache: built in two halves, equal to one process's.
            shares = re.search(r"teacher features: (\d+) computed in [\d.]+ s \((\d+) \+ (\d+) by 2 processes\)",
                               launches.stderr("A2T_alone"))
            total, half, other = map(int, shares.groups())
            assert half + other == total and abs(half - other) <= 1
            (cache_one,), (cache_two,) = (sorted(launches.out(name).glob("*.safetensors"))
                                          for name in ("cache_one", "cache"))
            single, double = load_file(str(cache_one)), load_file(str(cache_two))
            order_one, order_two = single["keys"].argsort(), double["keys"].argsort()
            assert torch.equal(single["keys"][order_one], double["keys"][order_two])
            assert torch.allclose(single["features"][order_one], double["features"][order_two], atol=1e-5)

    @pytest.mark.parametrize("name", cells("torchrun: kill and resume"))
    def test_torchrun_kill_and_resume(self, name, launches):
        # A run killed in epoch 2 and continued, in new processes, equals the run left alone bit for bit: every
        # process's random state was saved. T->A's first process killed itself (SIGKILL) and the same command,
        # started again, continued its named run; the others resume a copy of their folder as it was right after
        # epoch 1 saved its state, all that a kill in epoch 2 leaves.
        if name == "T2A":
            assert launches.first.returncode != 0 and "exitcode  : -9" in launches.first.stderr
            assert not Path(f"{launches.out('T2A_killed')}.rank0.code").exists()
            label, resumed = "T2A_requeued", launches.killed()
        else:
            label, resumed = f"{name}_resumed", launches.copy(name)
        assert launches.code(label) == [0, 0], launches.stderr(label)[-3000:]
        assert "resumed after epoch 1" in launches.stdout(label)
        assert_same_outcome(resumed, launches.alone(name))

    @pytest.mark.parametrize("name", cells("torchrun: --eval_only"))
    def test_torchrun_eval_only(self, name, launches):
        assert launches.code(f"{name}_eval") == [0, 0], launches.stderr(f"{name}_eval")[-3000:]
        (evaluation,) = launches.out(f"{name}_evaluation").rglob("eval.json")
        recorded = json.loads((launches.alone(name) / "results.json").read_text())
        assert [t["test"] for t in json.loads(evaluation.read_text())["trials"]] == [t["test"] for t in
                                                                                    recorded["trials"]]

    def test_an_error_inside_torch_on_one_process_ends_both_with_one_line(self, launches):
        # The second process fails inside a training step while the first waits for it in a collective: both end at
        # once (the rendezvous store tells the first, not a collective's timeout of 30 minutes), with exit 1 and the
        # line of the process that failed.
        told, failed = (Path(f"{launches.out('failing')}.rank{rank}.stderr").stat().st_mtime for rank in (0, 1))
        assert told - failed < 10
        assert re.findall(r"^\s+exitcode\s+: (-?\d+)", launches.second.stderr, re.M) == ["1", "1"]  # torchrun's report
        (trial,) = launches.out("failing_runs").rglob("trial0")
        line = ("IEMOCAP_A2T.py: error: training step 1 of epoch 1 failed on process 1: RuntimeError: a failure inside "
                f"torch, on purpose (traceback in {trial / 'error_process1.txt'})")
        assert last_line(launches.stderr("failing", 1)) == line
        assert f"{line} (found by process 1)" in launches.stderr("failing", 0)
        assert "(its second line)" in (trial / "error_process1.txt").read_text()
