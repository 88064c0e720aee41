"""What DDP's search for unused parameters costs a training step of T->A's wav2vec2 student, side by side.

The student skips layers (LayerDrop), so under torchrun its DistributedDataParallel looks for the parameters a step
left out (`find_unused_parameters`, utils/trial.py): a walk of the autograd graph after every forward. To time that
walk alone, two copies of the student with the same weights and LayerDrop off (so that both ways work) take training
steps on the same batch, one wrapped with the search and one without, in rounds whose order reverses every other
round. Run it under torchrun (one process per GPU, or gloo processes on the CPU):

    HF_HUB_OFFLINE=1 torchrun --standalone --nproc_per_node 2 benchmarks/ddp_unused_parameters.py          # CPU
    HF_HUB_OFFLINE=1 torchrun --standalone --nproc_per_node 8 benchmarks/ddp_unused_parameters.py --device cuda
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file, the root is not on the path
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: spinning threads skew the timings

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from teacher_cost import timed  # noqa: E402  (this folder's own benchmark)
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

from models.wav2vec2 import Wav2Vec2AudioStudent  # noqa: E402
from utils.processes import Processes, local_rank, rank, share, world_size  # noqa: E402


def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, inputs: dict, labels: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    logits, feature = model(**inputs)
    (torch.nn.functional.cross_entropy(logits, labels) + feature.pow(2).mean()).backward()
    optimizer.step()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the GPU of each process's local rank)")
    parser.add_argument("--student_path", default="random", help="the wav2vec2 student (default: base, random)")
    parser.add_argument("--batch", type=int, default=4, help="utterances a global batch (the README's 4)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each utterance")
    parser.add_argument("--rounds", type=int, default=7)
    options = parser.parse_args()
    device = torch.device("cuda", local_rank()) if options.device == "cuda" else torch.device("cpu")
    with Processes("ddp_unused_parameters.py", device):
        torch.manual_seed(0)
        student = Wav2Vec2AudioStudent(768, 6, options.student_path).to(device).train()
        student.wav2vec2.config.layerdrop = 0.0  # every layer in every step: both ways work
        samples = int(options.seconds * 16_000)
        own = share(options.batch)
        inputs = {"input_values": torch.randn(options.batch, samples)[own].to(device),
                  "attention_mask": torch.ones(options.batch, samples, dtype=torch.long)[own].to(device)}
        labels = torch.arange(options.batch)[own].to(device) % 6
        ids = [device] if device.type == "cuda" else None
        models = {search: DistributedDataParallel(copy.deepcopy(student), device_ids=ids, broadcast_buffers=False,
                                                  find_unused_parameters=search) for search in (False, True)}
        optimizers = {search: torch.optim.Adam(model.parameters(), lr=1e-5) for search, model in models.items()}
        seconds = {False: [], True: []}
        for k in range(options.rounds + 1):  # round 0 warms up
            for search in ((False, True) if k % 2 == 0 else (True, False)):
                dist.barrier()  # the processes start each measurement together
                took = timed(lambda: step(models[search], optimizers[search], inputs, labels), device)
                if k:
                    seconds[search].append(took)
        if rank() == 0:
            ratios = [with_search / without for without, with_search in zip(seconds[False], seconds[True])]
            print(f"{world_size()} processes on {device.type}, wav2vec2 student ({options.student_path}), global batch "
                  f"{options.batch} x {options.seconds:g} s, {options.rounds} rounds")
            print(f"step without the search: {statistics.median(seconds[False]):.3f} s, with it: "
                  f"{statistics.median(seconds[True]):.3f} s (medians)")
            print(f"with / without: {statistics.median(ratios):.3f} (median of each round's ratio; rounds: "
                  f"{' '.join(f'{ratio:.3f}' for ratio in ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
