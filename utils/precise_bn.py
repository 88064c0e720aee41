"""Precise BatchNorm statistics: the running mean and variance recomputed for the current weights.

During training BatchNorm keeps an exponential average (momentum 0.1) of the batch statistics while
the weights move. With few steps an epoch (a small data set, `--subset`, the first epochs) that
average describes weights long gone, and evaluation in eval mode can fall to chance although the
model has learned (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021). Before every evaluation
the statistics are therefore reset and recomputed as a true average over a fixed set of training
samples, under no_grad, with the weights that are about to be evaluated.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from utils.device import autocast, on_device
from utils.distributed import share

BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(module, BATCHNORMS) for module in model.modules())


@torch.no_grad()
def recompute_batchnorm_statistics(model: nn.Module, loader: DataLoader, device: torch.device,
                                   amp_dtype: torch.dtype | None = None) -> None:
    """Reset every BatchNorm layer's running statistics and recompute them over `loader` with the current
    weights: the mean of the batches' means and unbiased variances, each batch weighted by its size.

    Only the BatchNorm layers run in train mode (the rest stays in eval mode); nothing else changes.
    """
    layers = [module for module in model.modules() if isinstance(module, BATCHNORMS)]
    momenta = [layer.momentum for layer in layers]
    was_training = model.training
    model.eval()
    for layer in layers:
        layer.reset_running_stats()
        layer.train()
    seen = 0
    for batch in loader:
        seen += len(batch.labels)
        for layer in layers:
            # running = (1 - m) running + m batch with m = n_k / (n_1 + ... + n_k): a size-weighted mean.
            layer.momentum = len(batch.labels) / seen
        own = share(len(batch.labels))  # this process's part of the global batch (synchronised BatchNorm)
        inputs = {name: on_device(value[own], device) for name, value in batch.inputs.items()}
        with autocast(device, amp_dtype):
            model(**inputs)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum
    model.train(was_training)
