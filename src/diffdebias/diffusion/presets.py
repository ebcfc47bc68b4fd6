"""Training presets, and the automatic choice of one by device and image size (`preset=auto`).

`cpu-tiny` is DiffusionConfig's own defaults (a 1M-parameter UNet, 470 steps: minutes on a CPU);
`paper` is DDB's reference settings (a 36M-parameter UNet, 100k steps: a GPU's work). `auto`
takes cpu-tiny on a CPU and paper on any other device (CUDA, ...). Without an `image_size`,
images keep their own size up to MAX_AUTO_SIZE (rounded up to a size the preset's UNet takes,
e.g. 28 -> 32 px for paper) and larger ones are resized to it.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ConfigError
from ..runtime import resolve_device
from .models import size_factor

AUTO = "auto"
# DDB's reference code: UNet ch 128 (1,2,2,2), linear betas 1e-4..0.028, eps-prediction, AdamW
# 1e-4, warm-up then cosine, 64 px, 100k iterations at batch 32 (Waterbirds).
PAPER_SETTINGS: dict[str, Any] = {
    "preset": "paper", "image_size": 64, "prediction": "epsilon", "schedule": "linear", "beta_end": 0.028,
    "lr": 1e-4, "warmup_steps": 5000, "max_steps": 100_000, "ema_max_decay": 0.9999, "checkpoint_every": 2000,
}  # fmt: skip
PRESET_SETTINGS: dict[str, dict[str, Any]] = {"cpu-tiny": {}, "paper": PAPER_SETTINGS}  # on top of the defaults
MAX_AUTO_SIZE = 64  # the paper's size; larger images are trained at it unless image_size says otherwise


def target_device(device: str | torch.device) -> torch.device:
    """The device a run on `device` trains on, without requiring it here ("auto": CUDA when available)."""
    return resolve_device(AUTO) if str(device) == AUTO else torch.device(device)


def resolved_settings(size: int, overrides: dict[str, Any], device: str | torch.device | None = None) -> dict[str, Any]:
    """The settings of a run on `size`-px images: the preset's (auto: by device), then `overrides`,
    with the preset's image size dropped (0: the images' own) for smaller images. `device`
    defaults to the `device` setting."""
    dev = str(device if device is not None else overrides.get("device", AUTO))
    preset = str(overrides.get("preset", AUTO))
    if preset == AUTO:
        preset = "cpu-tiny" if target_device(dev).type == "cpu" else "paper"
    if preset not in PRESET_SETTINGS:
        raise ConfigError(f"diffusion setting 'preset' must be one of {', '.join([AUTO, *PRESET_SETTINGS])}, got {preset!r}")
    settings = {**PRESET_SETTINGS[preset], **overrides, "preset": preset, "device": dev}
    if "image_size" not in overrides:  # small images keep their size, rounded up to one the UNet takes (28 -> 32 for paper)
        if settings.get("image_size", 0) > size:
            settings["image_size"] = 0
        own, f = min(size, MAX_AUTO_SIZE), size_factor(preset)
        if not settings.get("image_size") and own % f:
            settings["image_size"] = -(-own // f) * f
    return settings
