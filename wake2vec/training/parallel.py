"""Several processes under ``accelerate launch`` (or ``torchrun``): which one writes, and keeping
them in step.

A run started by a launcher has ``WORLD_SIZE`` > 1 in its environment. Every process then runs
the whole recipe; the main process (rank 0) alone writes the run directory, takes its lock and
fires lifecycle hooks, and the others wait for it where they need what it wrote. A plain
``wake2vec run`` never touches ``torch.distributed``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

# how long a process waits at a barrier for the others (the main process alone computes the
# metrics and writes the model between phases, which can take a while on a large model)
BARRIER_TIMEOUT_S = 2 * 3600


def launched_world_size() -> int:
    """The number of processes a launcher started (1 for a plain run)."""
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def is_main_process() -> bool:
    """Whether this process should write files: rank 0, or the only process."""
    for name in ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value) == 0
    return True


@dataclass(frozen=True)
class Processes:
    """This process's place among those of the run."""

    index: int = 0
    count: int = 1

    @property
    def main(self) -> bool:
        return self.index == 0

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.count > 1:
            from accelerate import PartialState

            PartialState().wait_for_everyone()

    def share(self, value: T) -> T:
        """The main process's ``value`` (a picklable object), on every process."""
        if self.count == 1:
            return value
        from torch.distributed import broadcast_object_list

        box = [value if self.main else None]
        broadcast_object_list(box, src=0)
        return box[0]

    def main_first(self, work: Callable[[], T]) -> T:
        """Run ``work`` on the main process, then on the others (which may reuse what the main
        process cached, such as a built model or tokenised data)."""
        result: Any = None
        if self.main:
            result = work()
        self.barrier()
        if not self.main:
            result = work()
        return result


def start_processes() -> Processes:
    """Join the launcher's process group (gloo on CPU-only machines) when there are several
    processes; a single process gets ``Processes()`` without importing torch."""
    if launched_world_size() <= 1:
        return Processes()
    from datetime import timedelta

    import torch
    from accelerate import PartialState

    accelerator = getattr(torch, "accelerator", None)
    has_accelerator = (
        accelerator.is_available() if accelerator is not None else torch.cuda.is_available()
    )
    # ``accelerate launch --multi_gpu`` on a machine without a GPU: use gloo on the CPU
    forced = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    cpu = forced or not has_accelerator
    state = PartialState(cpu=cpu, timeout=timedelta(seconds=BARRIER_TIMEOUT_S))
    return Processes(state.process_index, state.num_processes)
