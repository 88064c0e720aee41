"""The frozen teacher: a pretrained model of one modality that maps its inputs to one feature each, never trains, and
says what its features depend on (its identity keys the teacher cache on disk; `cache_block`, how many inputs the
cache may compute in one forward). Each family's teacher (ResNet, wav2vec2, text) builds on it; where its weights
come from is models/pretrained.py."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import torch
from torch import nn

from models.pretrained import ModelSource, fingerprint_module, hub_snapshot
from utils.fingerprints import hash_path


class FrozenTeacher(nn.Module):
    """A teacher: no trainable parameters and always in eval mode, whatever its caller's ``train()`` says."""

    dim: int
    source: ModelSource
    model: nn.Module
    preprocessing: str  # how an input becomes a feature, e.g. "16kHz,per-clip-zmuv,unpadded,mean-frames"
    cache_block: int  # inputs the feature cache computes in one forward (utils.experiment.Teacher says which)

    @cached_property
    def identity(self) -> str:
        """The weights by content and the preprocessing: the disk cache's key changes whenever either does.
        Computed on first use, so only runs with --cache_dir pay for hashing the weights."""
        return f"{self.source.name}|{self.weights_digest()}|{self.preprocessing}"

    def weights_digest(self) -> str:
        """Hugging Face weights: a random initialisation by its values, a local folder by its files' bytes,
        a hub model by the revision resolved and its files' bytes."""
        if self.source.random_init:
            return f"random:{fingerprint_module(self.model)}"
        if Path(self.source.source).is_dir():
            return hash_path(Path(self.source.source))
        snapshot = hub_snapshot(self.source.source)
        return f"{self.source.source}@{snapshot.name}:{hash_path(snapshot)}"

    def freeze(self) -> None:
        """Turn gradients off and switch to eval mode; call at the end of ``__init__``."""
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FrozenTeacher:
        """Stay in eval mode: a parent's ``.train()`` must not turn on dropout or time masking."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        """Where the teacher's weights are; ``encode`` moves its inputs there."""
        return next(self.parameters()).device
