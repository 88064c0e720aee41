"""The two AVMNIST scripts run as a user would run the README commands, on synthetic data."""

import csv
import json

import pytest
import torch

from tests.helpers import results_in, results_of, run_folder, run_in_process, run_script

# The README's AVMNIST commands; the tests only shrink the budget on top of them.
README_AVMNIST = ["--epochs", "30", "--learning_rate", "1e-3", "--batch_size", "32", "--optim", "adam",
                  "--lam", "0.3", "--lr_decay_step", "25", "--lr_decay_ratio", "0.1", "--mj_model", "resnet18",
                  "--n_times", "3", "--random_seed", "42"]
TINY_BUDGET = ["--epochs", "3", "--n_times", "2"]


@pytest.fixture(scope="module")
def v2a_run(avmnist, tiny_models, tmp_path_factory):
    """The README command as a user runs it, in a fresh interpreter."""
    # One trial of one step an epoch at the README's batch of 32 (the 112x112 student is the costliest step of the
    # suite); the A->V test below runs two trials.
    args = [*README_AVMNIST, "--data_root", str(avmnist), "--teacher_path", tiny_models["resnet18"], *TINY_BUDGET,
            "--n_times", "1", "--subset", "32"]
    return run_script("AVMNIST_V2A.py", *args, "--output_dir", str(tmp_path_factory.mktemp("runs")))


def test_v2a_readme_command_writes_every_output(v2a_run):
    process = v2a_run
    results = results_of(process)
    lines = process.stdout.splitlines()
    assert lines[-1].startswith("Overall test acc: ") and lines[-1].endswith(" AVMNIST V->A")
    folder = run_folder(process)
    assert folder.parent.name == "AVMNIST_V2A" and folder.name.endswith("_seed42")
    assert (folder / "log.txt").read_text().splitlines() == lines
    args = json.loads((folder / "args.json").read_text())
    assert args["feature_dim"] == 512 and args["lam"] == 0.3 and args["mj_model"] == "resnet18"
    assert results["teacher"] == {"name": "resnet18", "source": args["teacher_path"], "random_init": False, "dim": 512}
    (trial,) = results["trials"]
    assert trial["seed"] == 42 and results["summary"]["n"] == 1
    assert set(trial["test"]) == {"acc", "cls_loss", "latent_loss"} and trial["test"]["latent_loss"] > 0
    rows = list(csv.DictReader(open(folder / "trial0" / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert list(rows[0]) == ["epoch", "lr", "train_cls", "train_latent", "train_acc", "val_cls", "val_latent",
                             "val_acc", "train_seconds", "epoch_seconds"]
    assert float(rows[-1]["train_cls"]) < float(rows[0]["train_cls"])  # the training loss goes down
    split = json.loads((folder / "trial0" / "split.json").read_text())
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (32, 9, 32)
    state = torch.load(folder / "trial0" / "best.pt", weights_only=True)
    assert state["head.2.weight"].shape == (10, 512)  # the classifier on the 512-d feature


def test_v2a_validation_and_test_are_far_above_chance_at_the_readme_batch_size(v2a_run):
    # One step an epoch at batch 32: evaluation reflects what the student learned thanks to the precise
    # BatchNorm statistics (with --precise_bn 0 it falls to chance: tests/test_precise_bn.py).
    (trial,) = results_of(v2a_run)["trials"]
    assert trial["val"]["acc"] > 0.5 and trial["test"]["acc"] > 0.5  # chance is 0.1


def test_a2v_readme_command_with_local_wav2vec2(avmnist, tiny_models, tmp_path, capsys):
    code, out, err = run_in_process("AVMNIST_A2V.py", [*README_AVMNIST, "--data_root", str(avmnist), "--teacher_path",
                                                       tiny_models["wav2vec2"], *TINY_BUDGET, "--subset", "32",
                                                       "--output_dir", str(tmp_path)], capsys)
    assert code == 0, err[-3000:]
    results = results_in(tmp_path)
    assert "--mj_model 'resnet18' is not one of base, large" in err  # the README passes resnet18
    assert out.splitlines()[-1].endswith(" AVMNIST A->V")
    assert results["teacher"]["dim"] == 32 and results["teacher"]["name"] == "wav2vec2-base"
    assert [trial["seed"] for trial in results["trials"]] == [42, 43]
    for trial in results["trials"]:
        assert trial["val"]["acc"] > 0.5 and trial["test"]["acc"] > 0.5  # chance is 0.1
    assert results["trials"][0]["test"] != results["trials"][1]["test"]  # each trial is seeded on its own


def test_lam_zero_loads_no_teacher(avmnist, tmp_path, capsys):
    # Offline, the default ImageNet teacher cannot be loaded (tests/test_bad_input.py): lam 0 never tries.
    code, out, err = run_in_process("AVMNIST_V2A.py", ["--data_root", str(avmnist), "--lam", "0", "--epochs", "1",
                                                       "--n_times", "1", "--batch_size", "16", "--subset", "20",
                                                       "--output_dir", str(tmp_path)], capsys)
    assert code == 0, err
    results = results_in(tmp_path)
    assert results["teacher"] is None and results["trials"][0]["test"]["latent_loss"] is None
    assert "latent: -" in out


def test_random_teacher_is_announced_and_recorded(avmnist, tmp_path, capsys):
    code, _, err = run_in_process("AVMNIST_V2A.py", ["--data_root", str(avmnist), "--teacher_path", "random",
                                                     "--epochs", "1", "--n_times", "1", "--batch_size", "16",
                                                     "--subset", "20", "--pca", "false",
                                                     "--output_dir", str(tmp_path)], capsys)
    assert code == 0 and "randomly initialised" in err
    assert results_in(tmp_path)["teacher"]["random_init"] is True
