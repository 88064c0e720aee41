"""The trial machinery in-process: paired lam comparisons, split files, subsets, teacher sources."""

import json

import numpy as np
import pytest
import torch

import AVMNIST_A2V
import AVMNIST_V2A
from models.resnet import ImageResNetStudent
from tests.helpers import build_trial, last_line, run_in_process
from utils.experiment import InputError
from utils.run_files import summarise
from utils.teacher_features import InLoopTeacher, TeacherFeatureCache


def first_batches(setup, n=3):
    return [batch.positions.tolist() for _, batch in zip(range(n), setup.loaders["train"])]


def test_lam_zero_and_lam_positive_runs_are_paired(avmnist, tiny_models, tmp_path):
    base = ["--data_root", str(avmnist), "--batch_size", "8", "--teacher_path", tiny_models["resnet18"]]
    plain = build_trial(AVMNIST_V2A, [*base, "--lam", "0"], tmp_path / "plain")
    helped = build_trial(AVMNIST_V2A, [*base, "--lam", "0.3"], tmp_path / "helped")
    assert plain.teacher_features is None and helped.teacher_features is not None
    assert (tmp_path / "plain" / "split.json").read_text() == (tmp_path / "helped" / "split.json").read_text()
    for (name, a), b in zip(plain.student.state_dict().items(), helped.student.state_dict().values()):
        assert torch.equal(a, b), name
    assert first_batches(plain) == first_batches(helped)
    other = build_trial(AVMNIST_V2A, [*base, "--lam", "0"], tmp_path / "other", seed=43)
    assert first_batches(other) != first_batches(plain)


def test_the_training_loader_seeds_its_workers_from_the_trial_seed(avmnist, tiny_models, tmp_path):
    # A loader draws its workers' base seed from its generator; with torch's default one every trial of every
    # seed would share it.
    argv = ["--data_root", str(avmnist), "--lam", "0", "--subset", "8"]
    trials = [build_trial(AVMNIST_V2A, argv, tmp_path / str(k), seed=seed) for k, seed in enumerate((42, 42, 43))]
    seeds = [trial.loaders["train"].generator.initial_seed() for trial in trials]
    assert seeds[0] == seeds[1] != seeds[2]
    assert trials[0].loaders["val"].generator is None  # evaluation loaders draw from the global generator


def test_split_file_and_subset(avmnist, tiny_models, tmp_path):
    base = ["--data_root", str(avmnist), "--teacher_path", tiny_models["resnet18"]]
    build_trial(AVMNIST_V2A, [*base, "--subset", "5"], tmp_path / "first")
    split = json.loads((tmp_path / "first" / "split.json").read_text())
    assert [len(split[k]) for k in ("train", "val", "test")] == [5, 5, 5] and split["subset"] == 5
    reused = build_trial(AVMNIST_V2A, [*base, "--split_file", str(tmp_path / "first" / "split.json")],
                         tmp_path / "reused", seed=7)
    assert json.loads((tmp_path / "reused" / "split.json").read_text())["train"] == split["train"]
    assert len(reused.splits["train"].dataset) == 5
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": [0, 1], "val": [1], "test": [0]}))
    with pytest.raises(InputError, match="item 1 of the train array appears 2 times in .train. and .val."):
        build_trial(AVMNIST_V2A, [*base, "--split_file", str(bad)], tmp_path / "bad")


def test_cached_features_equal_in_loop_features(avmnist, tiny_models, tmp_path):
    for script, teacher in ((AVMNIST_V2A, "resnet18"), (AVMNIST_A2V, "wav2vec2")):
        argv = ["--data_root", str(avmnist), "--teacher_path", tiny_models[teacher], "--subset", "12"]
        cached = build_trial(script, argv, tmp_path / f"{script.SCRIPT}_cached")
        in_loop = build_trial(script, [*argv, "--teacher_cache", "off"], tmp_path / f"{script.SCRIPT}_in_loop")
        assert isinstance(cached.teacher_features, TeacherFeatureCache)
        assert isinstance(in_loop.teacher_features, InLoopTeacher)
        keys = np.concatenate([cached.splits["train"].teacher_keys[:6], cached.splits["test"].teacher_keys[:6]])
        assert torch.allclose(cached.teacher_features(keys), in_loop.teacher_features(keys), atol=1e-5)


def test_summary_uses_population_std():
    trials = [{"test": {"acc": 0.5}}, {"test": {"acc": 0.7}}]
    assert summarise(trials) == pytest.approx({"test_acc_mean": 0.6, "test_acc_std": 0.1, "n": 2})


def strict_json(path):
    def refuse(constant):
        raise ValueError(f"{constant} in {path}: not strict JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_non_finite_validation_predictions_end_the_run_naming_split_and_epoch(avmnist, tmp_path, monkeypatch,
                                                                            capsys):
    forward = ImageResNetStudent.forward

    def nan_in_evaluation(self, x):
        logits, feature = forward(self, x)
        return (logits if self.training else logits * float("nan")), feature

    monkeypatch.setattr(ImageResNetStudent, "forward", nan_in_evaluation)
    code, out, err = run_in_process("AVMNIST_A2V.py", ["--data_root", str(avmnist), "--lam", "0", "--epochs", "2",
                                                       "--n_times", "1", "--output_dir", str(tmp_path)], capsys)
    assert code == 1
    assert last_line(err).startswith("AVMNIST_A2V.py: error: the validation loss or predictions became non-finite "
                                     "in epoch 1")
    assert "Val -" not in out and "Overall" not in out  # nothing non-finite is reported as a result
    (results,) = tmp_path.rglob("results.json")
    assert strict_json(results)["complete"] is False and strict_json(results)["trials"] == []


def test_diverging_loss_exits_1_and_keeps_the_run_folder(avmnist, tmp_path, capsys):
    code = AVMNIST_A2V.main(["--data_root", str(avmnist), "--lam", "0", "--optim", "sgd", "--learning_rate", "1e30",
                             "--subset", "8", "--batch_size", "4", "--epochs", "2", "--n_times", "1",
                             "--no_progress", "--output_dir", str(tmp_path)])
    assert code == 1
    assert last_line(capsys.readouterr().err).startswith("AVMNIST_A2V.py: error: the training loss")
    assert next(tmp_path.rglob("args.json")).is_file()
