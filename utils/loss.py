"""The training objective: (1 - lam) * CE(logits, y) + lam * MSE(student_feature, teacher_feature)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class LossTerms(NamedTuple):
    loss: torch.Tensor  # what training minimises
    cls: torch.Tensor  # the cross-entropy, a mean over the batch
    latent: torch.Tensor | None  # the feature distance; None without a teacher feature (lam = 0)


class SynergyObjective:
    """The objective of a trial, built once with its `lam`. Both terms are computed in float32 so that autocast
    does not change the objective."""

    def __init__(self, lam: float) -> None:
        self.lam = lam

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, student_feature: torch.Tensor,
                 teacher_feature: torch.Tensor | None) -> LossTerms:
        """Without a teacher feature (lam = 0) the loss is the plain cross-entropy."""
        cls = F.cross_entropy(logits.float(), labels)
        if teacher_feature is None:
            return LossTerms(cls, cls, None)
        # The feature distance: the mean over every element of the B x D matrices.
        latent = F.mse_loss(student_feature.float(), teacher_feature.float())
        return LossTerms((1.0 - self.lam) * cls + self.lam * latent, cls, latent)
