"""Devices and seeding, shared by every training loop."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch

from .errors import RunError


def resolve_device(name: str) -> torch.device:
    """'auto' takes CUDA when available; asking for CUDA without one is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RunError(f"device={name} asked for, but no CUDA device is available; use --set device=cpu")
    return torch.device(name)


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
