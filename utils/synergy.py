"""The method of Lee & Yoon, "Can One Modality Model Synergize Training of Other Modality Models?" (ICLR 2025).

A frozen pretrained model of modality A (the teacher) helps train a model of modality B (the student). The student
returns `(logits, feature)`; the teacher one feature per input. Training minimises

    loss = (1 - lam) * CE(logits, y) + lam * MSE(student_feature, teacher_feature)

and the paper's point is that the teacher's input is *unpaired* with the student's sample: in training the
teacher sees another training sample's other modality (AVMNIST, A->T), or a template sentence of a random class
(T->A), never the sample's own. `--pairing paired` feeds the sample's own other modality (an ablation). Validation
and test pull towards the sample's own teacher input, a diagnostic that never changes the accuracy.

Here are the three pieces: the objective, the partner draws, and the teacher target of a batch. Teacher inputs are
named by integer *keys* (`utils.experiment.TeacherInputs`); a feature source (`utils.teacher_features`) maps keys
to features. Partners are drawn in the main process, O(1) per sample, from the trial's own partner generator, so
the draws never depend on DataLoader workers or on the number of processes, and a `--lam 0` run (no draws) keeps
the batch order of any other lam.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from utils.experiment import InputError, Split


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


def draw_unpaired_partners(positions: np.ndarray, pool_size: int, rng: np.random.Generator) -> np.ndarray:
    """For each position in 0..pool_size-1, a uniformly drawn *other* position of the pool."""
    if pool_size < 2:
        raise InputError(f"unpaired partners need at least 2 training samples, the training split has {pool_size}")
    draws = rng.integers(0, pool_size - 1, size=len(positions))
    return draws + (draws >= positions)  # skip the sample itself without rejection


class OtherSamplePartners:
    """AVMNIST and A->T: the teacher sees the other modality of another training sample."""

    def __init__(self, train_keys: np.ndarray, rng: np.random.Generator) -> None:
        self.train_keys, self.rng = np.asarray(train_keys), rng

    def draw(self, positions: np.ndarray) -> np.ndarray:
        return self.train_keys[draw_unpaired_partners(positions, len(self.train_keys), self.rng)]

    def possible_keys(self) -> np.ndarray:
        return self.train_keys


class TemplatePartners:
    """T->A: the teacher reads the template sentence of a uniformly drawn class number k."""

    def __init__(self, template_keys: np.ndarray, rng: np.random.Generator) -> None:
        self.template_keys, self.rng = np.asarray(template_keys), rng

    def draw(self, positions: np.ndarray) -> np.ndarray:
        return self.template_keys[self.rng.integers(0, len(self.template_keys), size=len(positions))]

    def possible_keys(self) -> np.ndarray:
        return self.template_keys


class PairedPartners:
    """`--pairing paired` (ablation): each sample's own other modality."""

    def __init__(self, train_keys: np.ndarray) -> None:
        self.train_keys = np.asarray(train_keys)
        self.rng = None  # draws nothing

    def draw(self, positions: np.ndarray) -> np.ndarray:
        return self.train_keys[positions]

    def possible_keys(self) -> np.ndarray:
        return self.train_keys


Partners = OtherSamplePartners | TemplatePartners | PairedPartners


def training_partners(pairing: str, train_keys: np.ndarray, unpaired_pool: np.ndarray | None,
                      rng: np.random.Generator) -> Partners:
    """A trial's training partners: with `--pairing paired` the sample's own teacher input; unpaired, a
    uniform draw from `unpaired_pool` (T->A's template sentences) or, without a pool, another training sample."""
    if pairing == "paired":
        return PairedPartners(train_keys)
    if unpaired_pool is not None:
        return TemplatePartners(unpaired_pool, rng)
    return OtherSamplePartners(train_keys, rng)


def teacher_targets(features: Callable[[np.ndarray], torch.Tensor] | None, partners: Partners, split: Split,
                    positions: np.ndarray, training: bool, own: slice = slice(None)) -> torch.Tensor | None:
    """The teacher features that the student features of a batch (its samples' `positions` in `split`) are pulled
    towards: in training those of each sample's drawn partner, in evaluation those of the sample's own teacher
    input; None without a teacher (lam 0). With several processes `own` is this process's share of the global
    batch: the partners are drawn for the whole batch, as one process draws them, and the share taken after."""
    if features is None:
        return None
    keys = partners.draw(positions) if training else split.teacher_keys[positions]
    return features(keys[own])
