"""--compile: the training step compiled by torch.compile trains as the eager one does (within rounding), and the
checkpoints stay the plain student's state_dict."""

import csv

import torch

import AVMNIST_A2V
from tests.helpers import results_in


def test_compiled_training_step_equals_the_eager_one_within_rounding(avmnist, tiny_models, tmp_path, monkeypatch,
                                                                    capsys):
    # inductor generates and compiles C++ even for a tiny model (about 30 s on this CPU); here the student is
    # compiled with aot_eager: the same graph capture, AOT autograd and compiled backward, without code generation
    # (benchmarks/step_cost.py times inductor).
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model: compile_(model, backend="aot_eager"))
    argv = ["--data_root", str(avmnist), "--teacher_path", tiny_models["wav2vec2"], "--subset", "24", "--batch_size",
            "8", "--epochs", "1", "--n_times", "1", "--no_progress"]
    assert AVMNIST_A2V.main([*argv, "--output_dir", str(tmp_path / "eager")]) == 0
    assert "compile:" not in capsys.readouterr().err
    assert AVMNIST_A2V.main([*argv, "--compile", "--output_dir", str(tmp_path / "compiled")]) == 0
    err = capsys.readouterr().err
    assert err.count("compile: torch.compile compiled the training step of ImageResNetStudent in ") == 1
    eager, compiled = (results_in(tmp_path / name)["trials"][0] for name in ("eager", "compiled"))
    # Fused graphs sum in another order: losses agree to 1e-4 (relative) after 3 steps, predictions exactly.
    rows = [list(csv.DictReader(open(next((tmp_path / name).rglob("metrics.csv"))))) for name in ("eager", "compiled")]
    for a, b in zip(*rows, strict=True):
        for column in ("train_cls", "train_latent", "val_cls", "val_latent"):
            assert abs(float(a[column]) - float(b[column])) <= 1e-4 * abs(float(a[column])), column
        assert a["train_acc"] == b["train_acc"] and a["val_acc"] == b["val_acc"]
    assert eager["test"]["acc"] == compiled["test"]["acc"]
    state = torch.load(next((tmp_path / "compiled").rglob("best.pt")), weights_only=True)
    assert not [name for name in state if "_orig_mod" in name]  # the plain student's state_dict
