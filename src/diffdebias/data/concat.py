"""One split made of several (e.g. real + synthetic training images), indexed end to end."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import DatasetError
from .base import Split


class ConcatSplit(Split):
    """The samples of `parts` one after another; every part must share the image spec."""

    def __init__(self, name: str, parts: Sequence[Split]):
        if not parts:
            raise DatasetError(f"split '{name}': nothing to concatenate")
        spec = parts[0].spec
        if any(p.spec != spec for p in parts):
            raise DatasetError(f"split '{name}': parts have different image specs; bring them to {spec} first")
        super().__init__(name, torch.cat([p.y for p in parts]), torch.cat([p.b for p in parts]), spec)
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in parts])
        self.in_memory = all(p.in_memory for p in parts)

    def _locate(self, index: int) -> tuple[Split, int]:
        k = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.parts[k], int(index - self.offsets[k])

    def load_uint8(self, index: int) -> torch.Tensor:
        part, i = self._locate(index)
        return part.load_uint8(i)

    def batch(self, indices: torch.Tensor):
        shapes = {tuple(p.images.shape[1:]) if hasattr(p, "images") else None for p in self.parts}
        if None in shapes or len(shapes) != 1:
            return super().batch(indices)
        which = torch.as_tensor(np.searchsorted(self.offsets, indices.numpy(), side="right") - 1)
        raw = torch.empty((len(indices), *shapes.pop()), dtype=torch.uint8)
        for k, part in enumerate(self.parts):
            mask = which == k
            if mask.any():
                raw[mask] = part.images[indices[mask] - int(self.offsets[k])]
        return self.preprocess(raw), self.y[indices], self.b[indices], indices

    def subset(self, indices, name: str | None = None) -> "ConcatSplit":
        """The samples at `indices`, in that order (runs of one part become one sub-part)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        if len(idx) == 0:
            raise DatasetError(f"split '{self.name}': empty subset")
        which = torch.as_tensor(np.searchsorted(self.offsets, idx.numpy(), side="right") - 1)
        starts = [0] + (torch.nonzero(which[1:] != which[:-1]).flatten() + 1).tolist() + [len(idx)]
        pieces = []
        for lo, hi in zip(starts[:-1], starts[1:]):
            k = int(which[lo])
            pieces.append(self.parts[k].subset(idx[lo:hi] - int(self.offsets[k])))
        return ConcatSplit(name or self.name, pieces)
