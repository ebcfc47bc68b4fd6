"""Several processes (``accelerate launch`` / ``torchrun``): who is who, and the collectives the loops need.

A run started by a launcher (``WORLD_SIZE`` > 1 in the environment) initialises Accelerate's
process group (NCCL on GPUs, gloo on CPUs); every other run is a single process, where each
helper here is the identity and costs nothing. The loops use this data-parallel contract:

- every process draws the same random numbers (same seeds, same generator calls), so all agree on
  the order of the training samples; each global batch is cut into contiguous per-process blocks
  (`block`), and per-sample random draws are made for the whole global batch, each process keeping
  its rows, so the global batch is treated as one process would treat it;
- gradients are averaged by DDP (`wrap`); a loss that is a mean over the local block is
  `weighted` so that the average equals the gradient of the global batch's mean, and logged
  means are the global batch's (`batch_mean`);
- evaluation is sharded by blocks and `gather`ed, so every process holds every prediction and
  computes the same metrics as a single-process evaluation;
- only the main process writes run files (`is_main`); `barrier` orders reads after writes.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator

import torch

from .errors import RunError


def launched() -> bool:
    """True inside a multi-process launch (accelerate launch, torchrun, mpirun)."""
    for key in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        if int(os.environ.get(key, "1") or 1) > 1:
            return True
    return False


class Dist:
    """The process group of this run (a single process when not launched)."""

    def __init__(self) -> None:
        self.state = None
        self.rank, self.size = 0, 1
        self.device = None
        if launched():
            from accelerate import PartialState

            cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()
            self.state = PartialState(cpu=cpu)
            self.rank, self.size = self.state.process_index, self.state.num_processes
            self.device = self.state.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def barrier(self) -> None:
        if self.active:
            self.state.wait_for_everyone()

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """The main process runs the block first (and writes what it makes); the others run it
        after, finding those products on disk."""
        if not self.active:
            yield
            return
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def block(self, items: torch.Tensor) -> torch.Tensor:
        """This process's contiguous share of `items` (blocks in rank order rebuild `items`)."""
        return items.tensor_split(self.size)[self.rank] if self.active else items

    def block_slice(self, n: int) -> slice:
        """Rows of a length-`n` global batch that `block` gives this process."""
        if not self.active:
            return slice(0, n)
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def weighted(self, loss: torch.Tensor, n_local: int, n_global: int) -> torch.Tensor:
        """A mean loss over this process's `n_local` samples, weighted so that DDP's average of the
        gradients is the gradient of the mean over all `n_global` samples (`loss` itself in one process)."""
        return loss * (n_local * self.size / n_global) if self.active else loss

    def batch_mean(self, means: dict[str, torch.Tensor], n_local: int, n_global: int) -> dict[str, torch.Tensor]:
        """Means over this process's `n_local` samples -> the means over all `n_global` samples."""
        return {k: self.sum(v * n_local) / n_global for k, v in means.items()} if self.active else means

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """Concatenation of every process's `t` along dim 0 in rank order (lengths may differ);
        returned on `t`'s device."""
        if not self.active:
            return t
        from accelerate.utils import gather, pad_across_processes

        src = t.device
        local = t.to(self.device)
        sizes = gather(torch.tensor([len(local)], device=self.device)).tolist()
        padded = gather(pad_across_processes(local.contiguous(), dim=0))
        width = max(sizes)
        parts = [padded[i * width : i * width + n] for i, n in enumerate(sizes)]
        return torch.cat(parts).to(src)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over processes (returned on `t`'s device)."""
        if not self.active:
            return t
        out = t.detach().to(self.device).clone()
        torch.distributed.all_reduce(out, op=torch.distributed.ReduceOp.SUM)
        return out.to(t.device)

    def gather_object(self, obj) -> list:
        """Every process's picklable `obj` (from this run's own processes only), in rank order."""
        if not self.active:
            return [obj]
        out: list = [None] * self.size
        torch.distributed.all_gather_object(out, obj)
        return out

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """`module` in DistributedDataParallel when launched (and it has trainable weights)."""
        if not self.active or not any(p.requires_grad for p in module.parameters()):
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index if self.device.index is not None else 0] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def check_device(self, device: torch.device) -> torch.device:
        """The launcher decides the device of each process; a different explicit one is refused."""
        if not self.active:
            return device
        if device.type != self.device.type:
            raise RunError(f"device={device} was asked for, but this launch runs its processes on {self.device.type}; "
                           "use --set device=auto (or launch with accelerate launch --cpu / without it)")  # fmt: skip
        return self.device


@lru_cache(maxsize=1)
def current() -> Dist:
    """The process group of this run (created on first use)."""
    return Dist()


@contextmanager
def swapped(owner: object, wrapped: dict[str, torch.nn.Module]) -> Iterator[None]:
    """Temporarily replace the attributes of `owner` (a trainer) that hold the modules wrapped in
    `wrapped` (DDP wrappers by name) with those wrappers, so its forward passes go through DDP."""
    if not wrapped:
        yield
        return
    originals = {id(w.module): w for w in wrapped.values() if hasattr(w, "module")}
    replaced = {k: v for k, v in vars(owner).items() if id(v) in originals}
    for k, v in replaced.items():
        setattr(owner, k, originals[id(v)])
    try:
        yield
    finally:
        for k, v in replaced.items():
            setattr(owner, k, v)
