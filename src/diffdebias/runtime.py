"""Devices and seeding, shared by every training loop."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch

from .distributed import current
from .errors import RunError


def resolve_device(name: str) -> torch.device:
    """'auto' takes CUDA when available; asking for CUDA without one is a clear error. In a
    multi-process launch each process gets the device the launcher gave it."""
    dist = current()
    if name == "auto":
        return dist.device if dist.active else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RunError(f"device={name} asked for, but no CUDA device is available; use --set device=cpu")
    return dist.check_device(torch.device(name))


def speed_settings(modules, device: torch.device, *, channels_last: bool, compile: bool) -> bool:
    """Apply the GPU speed settings to `modules` in place: channels-last memory format (CUDA only)
    and torch.compile (`nn.Module.compile`, which keeps the state_dict keys). Returns whether the
    inputs should be channels-last too."""
    cl = channels_last and device.type == "cuda"
    for m in modules:
        if cl:
            m.to(memory_format=torch.channels_last)
        if compile:
            m.compile()
    return cl


def channels_last_input(x: torch.Tensor, on: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if on and x.dim() == 4 else x


def derived_seed(seed: int, name: str) -> int:
    """An independent, repeatable seed for a named part of a run."""
    return int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:8], 16)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def all_finite(tensors) -> bool:
    """True when every floating-point value of `tensors` is finite (one fused check, not one per tensor)."""
    flat = [t.detach().reshape(-1).float() for t in tensors if t.is_floating_point()]
    return not flat or bool(torch.isfinite(torch.cat(flat)).all())
