"""More than one process: `torchrun` or `accelerate launch` start them, the Trainer trains data-parallel.

edgesmith adds no engine of its own. The launcher starts N processes and sets RANK, WORLD_SIZE and the rendezvous
address; torch.distributed connects them (NCCL on GPUs, gloo on CPUs); the Hugging Face Trainer, through accelerate,
cuts every batch into per-process shares and averages the gradients. This module only lets the processes take
turns around the stages that do not train:

- the training stages (teacher fine-tuning, distillation: `Stage.distributed`) run in every process;
- every other stage runs once, on rank 0, while the others wait (`World.share`);
- rank 0 alone takes the run folder's lock and writes: the run folder is the one a single process leaves.

The others read rank 0's artifacts, so on several machines the run folder must be on a shared filesystem.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterator, TypeVar

from .errors import EdgesmithError

T = TypeVar("T")
# The others wait while rank 0 runs every stage but training (export, quantization, benchmarks): hours on a large
# model. A process that dies ends the launcher's whole group, so a long timeout never hides a crash.
WAIT = timedelta(days=2)


def world_size() -> int:
    """The number of processes the launcher started (1 without one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """True in the one process that writes the run folder and prints (rank 0, or the only process)."""
    return int(os.environ.get("RANK", "0")) == 0


@dataclass(frozen=True)
class World:
    """The processes of one run. `group` is the gloo group the waiting processes listen on (None: one process)."""
    rank: int = 0
    size: int = 1
    group: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, make: Callable[[], T]) -> T:
        """Rank 0 calls make() and sends its result to every process; the others wait for it and return it. It is
        also a barrier: when it returns, whatever make() wrote is there for every process to read.

        An error in make() is not sent: rank 0 raises it and exits, and the launcher (torchrun's elastic agent, which
        accelerate launch uses too) then stops the other processes, wherever they wait, even inside a training step."""
        if self.size == 1:
            return make()
        import torch.distributed as dist

        box: list[Any] = [make() if self.is_main else None]
        try:
            dist.broadcast_object_list(box, src=0, group=self.group)  # small objects: artifacts (path, digest, facts), flags
        except RuntimeError as err:  # gloo: "Connection closed by peer" when rank 0 exits with its error
            if self.is_main:
                raise
            raise EdgesmithError(f"rank {self.rank}: rank 0 stopped the run (its error is above); stopping too") from err
        return box[0]


@contextmanager
def join(batch_size: int) -> Iterator[World]:
    """The launcher's processes as one World (a single process when WORLD_SIZE is unset or 1).

    The global batch stays the recipe's `batch_size` however many processes train (training.training_args splits
    each batch among them), so N processes take the same optimizer steps as one; it must divide evenly."""
    size = world_size()
    if size == 1:
        yield World()
        return
    if batch_size % size:
        raise EdgesmithError(f"distill.batch_size {batch_size} does not split evenly over {size} processes (the global batch "
                             f"stays the recipe's); set distill.batch_size to a multiple of {size} or launch fewer processes")
    import torch
    import torch.distributed as dist

    ours = not dist.is_initialized()  # a caller's own process group (edgesmith.run from a script) stays theirs
    if ours:
        if torch.cuda.is_available():  # one GPU per process, as torchrun's LOCAL_RANK says
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    group = dist.new_group(backend="gloo", timeout=WAIT)
    try:
        yield World(dist.get_rank(), size, group)
    finally:
        dist.destroy_process_group(None if ours else group)
