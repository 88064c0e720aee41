"""A training or evaluation step reads nothing back from the device: on a GPU every such read stalls the queue of
kernels behind it. Counted on the CPU: the reads a CUDA run would wait for (a tensor's value on the host:
`_local_scalar_dense` under bool/int/float/item, `tolist`, `numpy`, `cpu`; and the index computations of boolean
masks, `nonzero` or a boolean `index_put_`), in an epoch of k and of 2k steps, so that what an epoch reads once
(its sums at the end, the DataLoader's seed at the start) cancels out. The optimizers' step counters are left
out: they stay on the host on CUDA too."""

from __future__ import annotations

import traceback
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import AVMNIST_A2V
import AVMNIST_V2A
import IEMOCAP_A2T
import IEMOCAP_T2A
from tests.helpers import build_trial
from utils.loop import run_epoch

REPO = Path(__file__).resolve().parents[1]
READ_OPS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default}
READ_METHODS = {torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.cpu}


def reader() -> str | None:
    """Where a read comes from: "project", or transformers' function that made it; None for the optimizers'."""
    stack = traceback.extract_stack()
    if any("/torch/optim/" in frame.filename or frame.name == "time_masks" for frame in stack):
        return None  # time_masks reads the tensors it made on the host from the collate's lengths
    for frame in reversed(stack):
        if "/transformers/" in frame.filename:
            return f"transformers {Path(frame.filename).name}:{frame.name}"
        if frame.filename.startswith(str(REPO)) and "/tests/" not in frame.filename:
            return "project"
    return None


class Reads(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        boolean_index = func is torch.ops.aten.index_put_.default and any(
            index is not None and index.dtype == torch.bool for index in args[1])
        if func in READ_OPS or boolean_index:
            self.seen[reader()] += 1
        return func(*args, **(kwargs or {}))


class MethodReads(TorchFunctionMode):
    def __init__(self, reads: Reads) -> None:
        super().__init__()
        self.reads = reads

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in READ_METHODS:
            self.reads.seen[reader()] += 1
        return func(*args, **(kwargs or {}))


def reads_of(trial, split: str) -> Counter[str]:
    reads = Reads()
    with MethodReads(reads), reads:
        run_epoch(trial, split, "the test")
    reads.seen.pop(None, None)
    return reads.seen


def per_step(script, argv, tmp_path) -> dict[str, Counter]:
    """Reads that grow with the steps of a training epoch and of an evaluation: reads per step by place."""
    passes = []
    for subset in (8, 16):  # batches of 4: 2 and 4 steps
        trial = build_trial(script, [*argv, "--subset", str(subset), "--batch_size", "4"], tmp_path / str(subset))
        passes.append({split: (reads_of(trial, split), len(trial.loaders[split])) for split in ("train", "val")})
    growth = {}
    for split in ("train", "val"):
        (small, k), (large, k2) = passes[0][split], passes[1][split]
        assert k2 > k
        growth[split] = Counter({place: (large[place] - small[place]) / (k2 - k) for place in large | small})
    return growth


@pytest.fixture
def experiments(avmnist, iemocap, tiny_models):
    iemocap_data = ["--audio_dir", str(iemocap), "--text_dir", str(iemocap / "IEMOCAP" / "texts"), "--warmup_epochs",
                    "0"]
    return {
        "V2A": (AVMNIST_V2A, ["--data_root", str(avmnist), "--teacher_path", tiny_models["resnet18"]]),
        "A2V": (AVMNIST_A2V, ["--data_root", str(avmnist), "--teacher_path", tiny_models["wav2vec2"]]),
        "T2A": (IEMOCAP_T2A, [*iemocap_data, "--teacher_path", tiny_models["bert"], "--student_path",
                              tiny_models["wav2vec2"]]),
        "A2T": (IEMOCAP_A2T, [*iemocap_data, "--teacher_path", tiny_models["wav2vec2"], "--student_path",
                              tiny_models["bert"]]),
    }


# What transformers' forwards still count in a step, and why they stay (the library offers no switch that keeps the
# numbers): BERT's SDPA mask preparation asks whether the padding mask is all ones (training only); wav2vec2's
# encoder zeroes padded frames through a boolean mask, its SpecAugment writes the drawn time masks through one
# (training), and its LayerDrop compares a random number per layer (training; drawn on the CPU, so no device
# read on CUDA either).
LIBRARY = {
    ("A2T", "train"): {"transformers masking_utils.py:_ignore_bidirectional_mask_sdpa": 1},
    ("T2A", "train"): {"transformers masking_utils.py:_ignore_bidirectional_mask_sdpa": 1,
                       "transformers modeling_wav2vec2.py:_mask_hidden_states": 1,
                       "transformers modeling_wav2vec2.py:forward": 1 + 2},  # 2 layers of the tiny student
    ("T2A", "val"): {"transformers modeling_wav2vec2.py:forward": 1},
}


@pytest.mark.parametrize("name", ["V2A", "A2V", "T2A", "A2T"])
def test_a_step_reads_nothing_back_from_the_device(experiments, name, tmp_path):
    script, argv = experiments[name]
    for split, reads in per_step(script, argv, tmp_path).items():
        assert reads.pop("project", 0) == 0, (split, reads)
        assert {place: count for place, count in reads.items() if count} == LIBRARY.get((name, split), {}), split
