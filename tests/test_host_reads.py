"""A training or evaluation step reads nothing back from the device: on a GPU every such read stalls the queue of
kernels behind it. Counted on the CPU: the reads a CUDA run would wait for (a tensor's value on the host:
`_local_scalar_dense` under bool/int/float/item, `tolist`, `numpy`, `cpu`; and the index computations of boolean
masks, `nonzero` or a boolean `index_put_`), in an epoch of k and of 2k steps, so that what an epoch reads once
(its sums at the end, the DataLoader's seed at the start) cancels out. The optimizers' step counters are left
out: they stay on the host on CUDA too."""

from __future__ import annotations

import functools
import traceback
from collections import Counter
from pathlib import Path

import pytest
import torch
import transformers
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import AVMNIST_A2V
import AVMNIST_V2A
import IEMOCAP_A2T
import IEMOCAP_T2A
from tests.helpers import build_trial
from utils.loop import run_epoch

REPO = Path(__file__).resolve().parents[1]
# The project's own code: the scripts and packages at the top of the repository (not tests/, nor a virtual
# environment that may live there too). Library code is told by where its package lies, wherever that is.
PROJECT = {path.name for path in REPO.iterdir()
           if path.suffix == ".py" or (path / "__init__.py").is_file()} - {"tests"}
TRANSFORMERS = Path(transformers.__file__).resolve().parent
OPTIMIZERS = Path(torch.optim.__file__).resolve().parent
# Our functions that draw random numbers on the host and read the tensors they made there (the time masks from the
# collate's lengths, LayerDrop's draw per layer): nothing a GPU run would wait for.
HOST_DRAWS = {"time_masked_frames", "layer_dropped"}
READ_OPS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default}
READ_METHODS = {torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.cpu}


@functools.cache
def place(filename: str) -> Path | None:
    """Where the code of a frame lies: its file, resolved; None for code without a file (`<frozen ...>`)."""
    path = Path(filename)
    return path.resolve() if path.is_absolute() else None


def reader() -> str | None:
    """Where a read comes from: "project", or transformers' function that made it; None for the optimizers' and the
    host draws'."""
    stack = [(place(frame.filename), frame.name) for frame in traceback.extract_stack()]
    if any(name in HOST_DRAWS or (path is not None and path.is_relative_to(OPTIMIZERS)) for path, name in stack):
        return None
    for path, name in reversed(stack):
        if path is None:
            continue
        if path.is_relative_to(TRANSFORMERS):
            return f"transformers {path.name}:{name}"
        if path.is_relative_to(REPO) and path.relative_to(REPO).parts[0] in PROJECT:
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
# numbers): BERT's and wav2vec2's SDPA mask preparation asks whether the padding mask is all ones (training only).
LIBRARY = {
    ("A2T", "train"): {"transformers masking_utils.py:_ignore_bidirectional_mask_sdpa": 1},
    ("T2A", "train"): {"transformers masking_utils.py:_ignore_bidirectional_mask_sdpa": 1},
}


@pytest.mark.parametrize("name", ["V2A", "A2V", "T2A", "A2T"])
def test_a_step_reads_nothing_back_from_the_device(experiments, name, tmp_path):
    script, argv = experiments[name]
    for split, reads in per_step(script, argv, tmp_path).items():
        assert reads.pop("project", 0) == 0, (split, reads)
        assert {place: count for place, count in reads.items() if count} == LIBRARY.get((name, split), {}), split
