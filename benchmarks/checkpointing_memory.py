"""What `--gradient_checkpointing` saves: the memory one training step of a base-size student adds at its peak,
with and without, side by side (wav2vec2-base on 4 utterances of 4 s, BERT-base on 4 texts of 128 tokens,
random init). On the CPU, the resident set's high-water mark (Linux); on CUDA, max allocated.

    HF_HUB_OFFLINE=1 python benchmarks/checkpointing_memory.py              # about a minute on 2 CPU cores
    HF_HUB_OFFLINE=1 python benchmarks/checkpointing_memory.py --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import gc
import re
import sys
import time
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file, the root is not on the path
import torch  # noqa: E402
from teacher_cost import table  # noqa: E402  (this folder's own benchmark)

from models.pretrained import RANDOM  # noqa: E402
from models.text import BertTextStudent  # noqa: E402
from models.wav2vec2 import Wav2Vec2AudioStudent  # noqa: E402

BATCH = 4


def _proc_status_kib(field_name: str) -> int:
    return int(re.search(rf"^{field_name}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


@contextlib.contextmanager
def peak_increase(device: torch.device) -> Iterator[dict[str, int]]:
    """Bytes a block adds to memory at its peak: CUDA max allocated, or the CPU resident set's high-water
    mark (Linux: /proc/self/clear_refs resets it, unlike the monotone ru_maxrss) over the start."""
    gc.collect()
    result: dict[str, int] = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        # glibc keeps freed heap pages resident: without returning them a step could reuse an earlier
        # step's pages unseen.
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        base = 1024 * _proc_status_kib("VmRSS")
    yield result
    if device.type == "cuda":
        result["bytes"] = torch.cuda.max_memory_allocated(device) - base
    else:
        result["bytes"] = 1024 * _proc_status_kib("VmHWM") - base


def wav2vec2_step(checkpointing: bool, device: torch.device) -> tuple[torch.nn.Module, dict]:
    student = Wav2Vec2AudioStudent(768, 6, RANDOM, gradient_checkpointing=checkpointing)
    inputs = {"input_values": torch.randn(BATCH, 4 * 16_000),
              "attention_mask": torch.ones(BATCH, 4 * 16_000, dtype=torch.long)}
    return student.to(device).train(), inputs


def bert_step(checkpointing: bool, device: torch.device) -> tuple[torch.nn.Module, dict]:
    student = BertTextStudent(768, 6, RANDOM, gradient_checkpointing=checkpointing)
    inputs = student.tokenize([" ".join(["emotion"] * 126)] * BATCH)
    return student.to(device).train(), inputs


def step_peak(build, checkpointing: bool, device: torch.device) -> tuple[int, float]:
    """Bytes one forward and backward add at their peak, and their seconds."""
    torch.manual_seed(0)
    student, inputs = build(checkpointing, device)
    inputs = {name: value.to(device) for name, value in inputs.items()}
    with peak_increase(device) as used:
        start = time.perf_counter()
        logits, feature = student(**inputs)
        (logits.sum() + feature.pow(2).mean()).backward()
        seconds = time.perf_counter() - start
    return used["bytes"], seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    device = torch.device(parser.parse_args().device)
    rows = []
    for name, build in (("wav2vec2-base, 4 x 4 s", wav2vec2_step), ("BERT-base, 4 x 128 tokens", bert_step)):
        peaks = {False: [], True: []}
        seconds = {False: [], True: []}
        for round_ in range(parser.parse_args().repeats):
            for checkpointing in ((False, True) if round_ % 2 == 0 else (True, False)):
                used, took = step_peak(build, checkpointing, device)
                peaks[checkpointing].append(used)
                seconds[checkpointing].append(took)
        plain, saved = min(peaks[False]), min(peaks[True])
        rows.append([name, f"{plain / 2**20:.0f} MiB", f"{saved / 2**20:.0f} MiB", f"{100 * (1 - saved / plain):.0f} %",
                     f"{min(seconds[False]):.2f}", f"{min(seconds[True]):.2f}"])
    print(table(["training step", "peak +", "with checkpointing", "saved", "s", "s with"], rows))
    print("peak +: what one forward and backward added to memory at its peak (minimum over the rounds).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
