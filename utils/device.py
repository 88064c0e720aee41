"""Where and in which precision a process computes: the device of `--device` / `--gpu_ids` (under torchrun, the GPU
of the process's local rank), `--amp` autocast, and a batch's inputs moved there."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

from utils.distributed import launched, local_rank

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # --amp


def resolve_device(device: str, gpu_ids: str) -> torch.device:
    """`--device cuda:N` wins over --gpu_ids; otherwise CUDA means cuda:<first of --gpu_ids>. Under torchrun
    each process takes the GPU of its local rank."""
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if launched():
        return torch.device("cuda", local_rank())
    if device.startswith("cuda:"):
        return torch.device(device)
    return torch.device(f"cuda:{int(gpu_ids.split(',')[0])}")


def on_device(value: Any, device: torch.device) -> Any:
    """A batch input on `device`, copied without waiting (pinned by the DataLoader on CUDA); host inputs such as
    the lengths a collate knows (NumPy arrays) stay on the host, where the student reads them."""
    return value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value


def autocast(device: torch.device, amp_dtype: torch.dtype | None):
    """Autocast for `--amp`, a no-op context without it."""
    if amp_dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)
