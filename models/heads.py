"""Classification heads and the masked mean pooling shared by the audio and text models."""

from __future__ import annotations

from torch import Tensor, nn


def masked_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``hidden`` (B×T×D) over the positions where ``mask`` (B×T) is nonzero → B×D.

    Padded positions get weight zero, so their values never reach the result. A row without a
    valid position gives zeros rather than NaN.
    """
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class AvmnistHead(nn.Sequential):
    """AVMNIST classifier on the D-dim feature: LayerNorm(D) → LeakyReLU(0.2) → Linear(D, C)."""

    def __init__(self, dim: int, num_classes: int = 10) -> None:
        super().__init__(nn.LayerNorm(dim), nn.LeakyReLU(0.2), nn.Linear(dim, num_classes))


class IemocapAudioHead(nn.Sequential):
    """IEMOCAP T→A classifier on the D-dim feature: Linear(D, 128) → GELU → Linear(128, C)."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__(nn.Linear(dim, 128), nn.GELU(), nn.Linear(128, num_classes))
