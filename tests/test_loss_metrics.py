import numpy as np
import pytest
import torch
import torch.nn.functional as F

from utils.metrics import MetricAccumulator, classification_report
from utils.synergy import SynergyObjective


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 4, generator=generator)
    labels = torch.tensor([0, 1, 2, 3, 1])
    student, teacher = torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)
    return logits, labels, student, teacher


def test_lam_zero_is_plain_cross_entropy_without_a_teacher(batch):
    logits, labels, student, _ = batch
    loss, cls, latent = SynergyObjective(0.0)(logits, labels, student, None)
    assert latent is None
    assert torch.allclose(loss, F.cross_entropy(logits, labels))


def test_lam_one_is_only_the_feature_mse(batch):
    logits, labels, student, teacher = batch
    loss, cls, latent = SynergyObjective(1.0)(logits, labels, student, teacher)
    assert torch.allclose(loss, ((student - teacher) ** 2).mean())
    assert torch.allclose(cls, F.cross_entropy(logits, labels))


def test_mix_weights_the_two_terms(batch):
    logits, labels, student, teacher = batch
    loss, cls, latent = SynergyObjective(0.3)(logits, labels, student, teacher)
    assert torch.allclose(loss, 0.7 * cls + 0.3 * latent)


def test_metrics_are_per_sample_not_a_mean_of_batch_means():
    metrics = MetricAccumulator()
    # a batch of 3 with loss 1.0 and a batch of 1 with loss 5.0: per sample the mean is 2.0, not 3.0
    metrics.add(torch.tensor(1.0), torch.tensor(0.5), torch.eye(3), torch.tensor([0, 1, 2]))
    metrics.add(torch.tensor(5.0), torch.tensor(2.5), torch.eye(3)[:1], torch.tensor([1]))
    summary = metrics.summary(3, detailed=False)
    assert summary["cls_loss"] == pytest.approx(2.0)
    assert summary["latent_loss"] == pytest.approx(1.0)
    assert summary["acc"] == pytest.approx(0.75)


def test_detailed_report_has_uar_f1_and_confusion():
    labels = np.array([0, 0, 0, 0, 1, 2])
    predictions = np.array([0, 0, 0, 0, 0, 2])
    report = classification_report(labels, predictions, 4)
    assert report["uar"] == pytest.approx((1 + 0 + 1) / 3)
    assert report["confusion"][1] == [1, 0, 0, 0] and len(report["confusion"]) == 4
    assert 0 < report["macro_f1"] < 1
