"""BatchNorm over the global batch when several processes share it (torchrun): torch's SyncBatchNorm on CUDA, and an
equivalent for gloo on the CPU, where torch's does not run."""

from __future__ import annotations

import torch
import torch.distributed.nn.functional as distributed_autograd
from torch import nn

from utils.distributed import world_size


class GlooSyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the global batch of all processes, for the CPU (gloo), where torch's SyncBatchNorm
    does not run. In training the per-channel sums are added up across processes (with gradients), in two
    passes (the mean, then the squared deviations from it, as precise as a single process's), so the
    statistics are those of the whole batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world_size() == 1:
            return super().forward(x)
        channels = x.shape[1]
        count = torch.full((1,), x.numel() // channels, dtype=x.dtype, device=x.device)
        totals = distributed_autograd.all_reduce(torch.cat([x.sum(dim=(0, 2, 3)), count]))
        n = totals[-1]
        centred = x - (totals[:channels] / n)[None, :, None, None]
        var = distributed_autograd.all_reduce((centred * centred).sum(dim=(0, 2, 3))) / n
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.lerp_(totals[:channels] / n, momentum)
            self.running_var.lerp_(var * n / (n - 1), momentum)
        scale = self.weight * torch.rsqrt(var + self.eps)
        return centred * scale[None, :, None, None] + self.bias[None, :, None, None]


def synchronise_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """With several processes, BatchNorm layers that see the global batch: torch's SyncBatchNorm on CUDA,
    `GlooSyncBatchNorm2d` on the CPU. The parameters and buffers are those of the layers replaced."""
    if world_size() == 1:
        return model
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = GlooSyncBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                               child.track_running_stats)
            replacement.load_state_dict(child.state_dict())
            replacement.weight, replacement.bias = child.weight, child.bias
            setattr(model, name, replacement)
        else:
            synchronise_batchnorm(child, device)
    return model
