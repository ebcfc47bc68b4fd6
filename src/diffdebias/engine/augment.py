"""Batch augmentations of the training loop, drawn from the stage's own generator (resumable).

Under several processes each process holds `rows` of a global batch of `total` samples: the
random parameters are drawn for the whole global batch (so every process's generator stays in
step) and the process keeps its rows."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class Augment:
    """Random crop (reflect padding of size/8) and horizontal flip, per sample, on a batch."""

    def __init__(self, size: int):
        self.pad = max(1, size // 8)

    def __call__(self, x: torch.Tensor, gen: torch.Generator, total: int | None = None, rows: slice = slice(None)) -> torch.Tensor:
        n, _, h, w = x.shape
        total = n if total is None else total
        flips = (torch.rand(total, generator=gen) < 0.5)[rows]
        offsets = torch.randint(0, 2 * self.pad + 1, (total, 2), generator=gen)[rows]
        padded = F.pad(x, (self.pad,) * 4, mode="reflect")
        out = torch.empty_like(x)
        for i in range(n):
            dy, dx = int(offsets[i, 0]), int(offsets[i, 1])
            crop = padded[i, :, dy : dy + h, dx : dx + w]
            out[i] = crop.flip(-1) if flips[i] else crop
        return out


class RandomAffine:
    """Per-sample random zoom (log-uniform in [1/scale, scale]), rotation (+-rotate degrees),
    translation (+-10%) and horizontal flip of a batch, zero padded; colours are untouched."""

    def __init__(self, scale: float, rotate: float, translate: float = 0.1):
        self.log_scale, self.rotate, self.translate = math.log(scale), math.radians(rotate), translate

    def __call__(self, x: torch.Tensor, gen: torch.Generator, total: int | None = None, rows: slice = slice(None)) -> torch.Tensor:
        u = (torch.rand(x.shape[0] if total is None else total, 5, generator=gen) * 2 - 1)[rows]
        zoom = torch.exp(-u[:, 0] * self.log_scale)  # sampling-grid factor: < 1 enlarges the image
        angle = u[:, 1] * self.rotate
        flip = torch.where(u[:, 2] < 0, -1.0, 1.0)
        cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
        theta = torch.stack([torch.stack([cos * flip, -sin, u[:, 3] * 2 * self.translate], 1),
                             torch.stack([sin * flip, cos, u[:, 4] * 2 * self.translate], 1)], 1)  # fmt: skip
        grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


def build_augment(hp: dict, size: int):
    """The augmentation a stage's hyperparameters ask for, or None."""
    if hp["affine_scale"] > 1 or hp["affine_rotate"] > 0:
        return RandomAffine(max(hp["affine_scale"], 1.0), hp["affine_rotate"])
    return Augment(size) if hp["augment"] else None
