"""Per-sample metrics: sums over samples, never a mean of batch means."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score

from utils.distributed import gather_rows, sum_across, world_size


@dataclass
class MetricAccumulator:
    """Accumulates sample-weighted losses and predictions over an epoch.

    Sums stay on the device until `summary`, so a training step adds no host synchronisation.
    """

    cls_sum: torch.Tensor | float = 0.0
    latent_sum: torch.Tensor | float | None = None
    count: int = 0
    nonfinite_logits: torch.Tensor | int = 0
    predictions: list[torch.Tensor] = field(default_factory=list)
    labels: list[torch.Tensor] = field(default_factory=list)

    def add(self, cls: torch.Tensor, latent: torch.Tensor | None, logits: torch.Tensor, labels: torch.Tensor) -> None:
        n = labels.shape[0]
        self.cls_sum = self.cls_sum + cls.detach().float() * n
        if latent is not None:  # (not `latent_sum or 0.0`: the truth value of a tensor is a read from the device)
            weighted = latent.detach().float() * n
            self.latent_sum = weighted if self.latent_sum is None else self.latent_sum + weighted
        self.count += n
        self.nonfinite_logits = self.nonfinite_logits + (~torch.isfinite(logits.detach())).sum()
        self.predictions.append(logits.detach().argmax(dim=1))
        self.labels.append(labels.detach())

    def across_processes(self) -> MetricAccumulator:
        """The sums and predictions of every process (each holds a share of the samples)."""
        if world_size() == 1:
            return self
        latent = 0.0 if self.latent_sum is None else self.latent_sum
        sums = sum_across(torch.stack([torch.as_tensor(value, dtype=torch.float64, device=self.labels[0].device)
                                       for value in (self.cls_sum, latent, self.count, self.nonfinite_logits)]))
        return MetricAccumulator(sums[0], None if self.latent_sum is None else sums[1], int(sums[2]), sums[3],
                                 [gather_rows(torch.cat(self.predictions))], [gather_rows(torch.cat(self.labels))])

    def finite(self) -> bool:
        """Whether every loss and every logit so far is finite (a NaN would make the accuracy meaningless)."""
        sums = [self.cls_sum] + ([] if self.latent_sum is None else [self.latent_sum])
        return all(math.isfinite(float(value)) for value in sums) and int(self.nonfinite_logits) == 0

    def summary(self, num_classes: int, detailed: bool) -> dict:
        """acc, cls_loss, latent_loss (None without a teacher); with `detailed` also uar, macro_f1, confusion."""
        labels = torch.cat(self.labels).cpu().numpy()
        predictions = torch.cat(self.predictions).cpu().numpy()
        result = {
            "acc": float((labels == predictions).mean()),
            "cls_loss": float(self.cls_sum) / self.count,
            "latent_loss": None if self.latent_sum is None else float(self.latent_sum) / self.count,
        }
        if detailed:
            result.update(classification_report(labels, predictions, num_classes))
        return result


def classification_report(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> dict:
    """Unweighted accuracy (mean recall over the true classes), macro-F1 (scikit-learn's default
    label set: classes seen in labels or predictions), confusion matrix with rows = true labels 0..C-1."""
    return {
        "uar": float(balanced_accuracy_score(labels, predictions)),
        "macro_f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),
        "confusion": confusion_matrix(labels, predictions, labels=list(range(num_classes))).tolist(),
    }
