"""Precise BatchNorm statistics before every evaluation of a ResNet student (and nothing for the others)."""

import numpy as np
import pytest
import torch
from torch import nn

import AVMNIST_A2V
import AVMNIST_V2A
import IEMOCAP_A2T
from tests.helpers import build_trial, results_in, run_in_process
from utils.experiment import Batch, InputError
from utils.precise_bn import has_batchnorm, recompute_batchnorm_statistics


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 4)
        self.norm = nn.BatchNorm1d(4)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x):
        return self.dropout(self.norm(self.linear(x)))


def batches(inputs, size):
    return [Batch({"x": chunk}, torch.zeros(len(chunk)), np.zeros(len(chunk))) for chunk in inputs.split(size)]


def test_statistics_are_the_size_weighted_mean_of_the_batch_statistics():
    torch.manual_seed(0)
    model, inputs = TinyNet(), torch.randn(23, 3) * 4 + 2
    weights = [p.clone() for p in model.parameters()]
    model.norm.running_mean.fill_(100.0)  # stale statistics from training
    recompute_batchnorm_statistics(model, batches(inputs, 8), torch.device("cpu"))
    with torch.no_grad():
        hidden = [model.linear(chunk) for chunk in inputs.split(8)]  # batches of 8, 8 and 7
    sizes = torch.tensor([len(h) for h in hidden], dtype=torch.float32).unsqueeze(1)
    mean = (torch.stack([h.mean(0) for h in hidden]) * sizes).sum(0) / sizes.sum()
    var = (torch.stack([h.var(0, unbiased=True) for h in hidden]) * sizes).sum(0) / sizes.sum()
    assert torch.allclose(model.norm.running_mean, mean, atol=1e-5)
    assert torch.allclose(model.norm.running_var, var, atol=1e-4)
    # Nothing else changed: the weights, the momentum, and the model's mode.
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))
    assert model.norm.momentum == 0.1 and model.training


def test_only_the_batchnorm_layers_run_in_train_mode():
    model = TinyNet()
    modes = []
    model.dropout.register_forward_hook(lambda module, args, out: modes.append(module.training))
    model.norm.register_forward_hook(lambda module, args, out: modes.append(module.training))
    recompute_batchnorm_statistics(model, batches(torch.randn(8, 3), 4), torch.device("cpu"))
    assert modes == [True, False, True, False]  # norm then dropout, for each of the two batches


def test_the_resnet_students_get_a_fixed_seeded_sample_the_same_for_every_lam(avmnist, tiny_models, tmp_path):
    argv = ["--data_root", str(avmnist), "--teacher_path", tiny_models["resnet18"], "--lam", "0", "--batch_size",
            "16", "--precise_bn", "48"]
    plain = build_trial(AVMNIST_V2A, argv, tmp_path / "plain")
    helped = build_trial(AVMNIST_V2A, [*argv, "--lam", "0.3"], tmp_path / "helped")
    other = build_trial(AVMNIST_V2A, argv, tmp_path / "other", seed=43)

    def positions(setup):
        return np.concatenate([batch.positions for batch in setup.loaders["precise_bn"]])

    assert len(positions(plain)) == 48 and len(set(positions(plain))) == 48  # 48 of the 81 training items
    assert np.array_equal(positions(plain), positions(helped))
    assert not np.array_equal(positions(plain), positions(other))
    everything = build_trial(AVMNIST_V2A, [*argv[:-3], "27", "--precise_bn", "8192"], tmp_path / "all")
    assert sorted(positions(everything)) == list(range(81))  # N larger than the split: the whole split
    partial = build_trial(AVMNIST_V2A, [*argv[:-3], "32", "--precise_bn", "8192"], tmp_path / "partial")
    assert len(positions(partial)) == 64  # in whole training batches: one of a single item has no statistics
    assert "precise_bn" not in build_trial(AVMNIST_V2A, argv[:-1] + ["0"], tmp_path / "off").loaders


def test_the_sample_is_batched_as_in_training_and_too_small_a_sample_is_refused(avmnist, tmp_path):
    argv = ["--data_root", str(avmnist), "--lam", "0", "--precise_bn", "33", "--batch_size", "32"]
    for script in (AVMNIST_A2V, AVMNIST_V2A):
        setup = build_trial(script, argv, tmp_path / script.SCRIPT)
        assert [len(batch.labels) for batch in setup.loaders["precise_bn"]] == [32]  # the last incomplete is dropped
    # A 28x28 image leaves a 1x1 map at the last BatchNorm: one sample has no statistics there.
    with pytest.raises(InputError, match="--precise_bn 1 gives a batch of 1 sample"):
        build_trial(AVMNIST_A2V, [*argv, "--precise_bn", "1"], tmp_path / "one")


def test_students_without_batchnorm_get_no_recalibration(iemocap, tiny_models, tmp_path):
    setup = build_trial(IEMOCAP_A2T, ["--audio_dir", str(iemocap), "--teacher_path", tiny_models["wav2vec2"],
                                      "--student_path", tiny_models["bert"]], tmp_path / "a2t")
    assert not has_batchnorm(setup.student) and "precise_bn" not in setup.loaders


def test_without_precise_statistics_a_learned_v2a_student_evaluates_at_chance(avmnist, tiny_models, tmp_path, capsys):
    # The record of the failure mode: 2 steps an epoch at the README's batch 32; the running averages
    # describe weights long gone. With the default statistics such a run is far above chance
    # (tests/test_paths.py: the README command, one step an epoch).
    code, _, err = run_in_process("AVMNIST_V2A.py", ["--data_root", str(avmnist), "--teacher_path",
                                                     tiny_models["resnet18"], "--epochs", "3", "--n_times", "1",
                                                     "--precise_bn", "0", "--output_dir", str(tmp_path)], capsys)
    assert code == 0, err
    trial = results_in(tmp_path)["trials"][0]
    assert trial["val"]["acc"] <= 0.3 and trial["test"]["acc"] <= 0.3  # chance is 0.1
