"""Several processes as one run (`torchrun --nproc_per_node N SCRIPT.py ...`): who does what, and how they agree.

Without torchrun every function here describes a single process and does nothing, so `python SCRIPT.py` runs as one
process. Under torchrun (NCCL on CUDA, one GPU per local rank; gloo on the CPU):
- every process builds the same split, student and batch order from the same seeds, reads every global
  batch whole (so that padding is that of one process) and takes a contiguous share of it (`--batch_size`
  stays the global batch), so that each sample counts exactly once;
- metrics are sums over samples, added up across the processes;
- the first process alone prints and writes files;
- a process that fails says so in the rendezvous store; the others stop as soon as they see it, with
  the same exit code and message, instead of waiting in a collective until its timeout.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

_FAILURE = "one-modality/failure"  # set by a failing process: "<exit code>|<rank>|<message>"
_POLL_SECONDS = 0.2


def launched() -> bool:
    """Whether torchrun started this process (as one of any number: with one, the run is that of
    `python SCRIPT.py`, with a process group around it)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """The process that prints and writes the run's files."""
    return rank() == 0


class ProcessGroup:
    """`with ProcessGroup(prog, device):` joins the other processes (if torchrun started several) and leaves
    them at the end. A failure inside is announced to the others, which then end with the same code."""

    def __init__(self, prog: str, device: torch.device) -> None:
        self.prog, self.device, self.store = prog, device, None
        self.left = threading.Event()  # set when the processes leave together: the watcher stops

    def __enter__(self) -> ProcessGroup:
        if not launched():
            return self
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            dist.init_process_group("nccl", device_id=self.device)
        else:
            dist.init_process_group("gloo")
        # A client of the rendezvous store torchrun set up (MASTER_ADDR:MASTER_PORT): the failure channel.
        self.store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size(),
                                   is_master=False)
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.watcher.start()
        self.sigterm = signal.signal(signal.SIGTERM, self._terminated)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: Any) -> None:
        if self.store is None or isinstance(error, SystemExit):  # argparse: every process refuses alike
            return
        if error is not None:
            earlier = self._failure()
            if earlier is not None and earlier[1] != rank():
                self._end_like(earlier)  # this error follows from it, e.g. a collective whose peer left
            return  # the run says what failed (`failed`)
        # The watcher stops first: a thread inside a store call while the interpreter exits aborts the process
        # ("terminate called without an active exception"), a finished run with it.
        self.left.set()
        self.watcher.join()
        signal.signal(signal.SIGTERM, self.sigterm)
        dist.destroy_process_group()

    def failed(self, code: int, message: str) -> None:
        """Tell the other processes that this one ends with `code` and `message` (the first failure wins)."""
        if self.store is not None:
            self.store.compare_set(_FAILURE, "", f"{code}|{rank()}|{message}")

    def _failure(self) -> tuple[int, int, str] | None:
        if not self.store.check([_FAILURE]):
            return None
        code, failed_rank, message = self.store.get(_FAILURE).decode().split("|", 2)
        return int(code), int(failed_rank), message

    def _watch(self) -> None:
        while not self.left.wait(_POLL_SECONDS):
            failure = self._failure()
            if failure is not None and failure[1] != rank():
                self._end_like(failure)

    def _end_like(self, failure: tuple[int, int, str]) -> None:
        code, failed_rank, message = failure
        line = "interrupted" if code == 130 else f"error: {message} (found by process {failed_rank})"
        print(f"{self.prog}: {line}", file=sys.stderr, flush=True)
        os._exit(code)  # this process may be blocked in a collective that will never complete

    def _terminated(self, signum: int, frame: Any) -> None:
        """torchrun stops the others when a process ends badly: end with that process's code."""
        failure = self._failure()
        if failure is None:
            raise KeyboardInterrupt
        self._end_like(failure)


def share(n: int) -> slice:
    """This process's contiguous share of `n` items (shares differ in size by at most one)."""
    bounds = np.linspace(0, n, world_size() + 1).round().astype(int)
    return slice(int(bounds[rank()]), int(bounds[rank() + 1]))


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Every process's rows, concatenated in process order (the rows of a share may number differently)."""
    if world_size() == 1:
        return tensor
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world_size())]
    dist.all_gather(sizes, size)
    longest = int(max(sizes).item())
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[:tensor.shape[0]] = tensor
    gathered = [torch.zeros_like(padded) for _ in range(world_size())]
    dist.all_gather(gathered, padded)
    return torch.cat([rows[:int(count.item())] for rows, count in zip(gathered, sizes)])


def sum_across(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over the processes."""
    if world_size() > 1:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
    return tensor


def from_main(value: Any) -> Any:
    """The first process's `value`, on every process."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value: Any) -> list[Any]:
    """Every process's `value`, in process order."""
    if world_size() == 1:
        return [value]
    values = [None] * world_size()
    dist.all_gather_object(values, value)
    return values


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
