"""The training objective: (1 - lam) * CE + lam * MSE(student_feature, teacher_feature)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def synergy_loss(logits: torch.Tensor, labels: torch.Tensor, student_feature: torch.Tensor,
                 teacher_feature: torch.Tensor | None, lam: float
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Return (loss, cls, latent). CE is the batch mean; MSE the mean over every element of B x D.

    Without a teacher feature (lam = 0) the loss is the plain cross-entropy and latent is None.
    Both parts are computed in float32 so that autocast does not change the objective.
    """
    cls = F.cross_entropy(logits.float(), labels)
    if teacher_feature is None:
        return cls, cls, None
    latent = F.mse_loss(student_feature.float(), teacher_feature.float())
    return (1.0 - lam) * cls + lam * latent, cls, latent
