"""The user's own data as a BiasedDataset: tensors, or a torch Dataset of (image, y[, b]) items."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DatasetError
from .base import UNKNOWN_BIAS, BiasedDataset, ImageSpec, TensorSplit, holdout

SplitSource = Dataset | tuple | Sequence


def make_dataset(train: SplitSource, val: SplitSource | None = None, test: SplitSource | None = None, *, num_classes: int | None = None,
                 num_bias: int | None = None, class_names: list[str] | None = None, name: str = "custom", val_fraction: float = 0.1,
                 seed: int = 0) -> BiasedDataset:  # fmt: skip
    """A BiasedDataset from the caller's splits. Each split is `(images, y)` or `(images, y, b)`
    (images uint8 in 0..255 or float in [0, 1], N x C x H x W, square, 1 or 3 channels) or a torch
    Dataset whose items are such tuples (read once into memory). Without bias labels `b`, methods
    that need none still run (the metrics that need them are None). Without `val`, a stratified
    `val_fraction` of `train` is held out; without `test`, the validation split is evaluated as test.
    """
    splits = {"train": _split("train", train)}
    if val is None:
        splits["train"], splits["val"] = holdout(splits["train"], val_fraction, seed, stratify=splits["train"].y)
    else:
        splits["val"] = _split("val", val)
    splits["test"] = _split("test", test) if test is not None else splits["val"].subset(torch.arange(len(splits["val"])), "test")
    if len({(s.images.shape[1], s.images.shape[2]) for s in splits.values()}) != 1:
        raise DatasetError(f"{name}: every split needs images of the same channels and size")
    c, size = splits["train"].images.shape[1], splits["train"].images.shape[-1]
    spec = ImageSpec(size, c, (0.5,) * c, (0.5,) * c)
    splits = {k: TensorSplit(k, s.images, s.y, s.b, spec) for k, s in splits.items()}
    ys = torch.cat([s.y for s in splits.values()])
    bs = torch.cat([s.b for s in splits.values()])
    k = num_classes or int(ys.max()) + 1
    nb = num_bias if num_bias is not None else (int(bs.max()) + 1 if (bs != UNKNOWN_BIAS).any() else 0)
    return BiasedDataset(name, splits, k, nb, spec, class_names, None, {"source": "make_dataset"})


def _split(name: str, source: SplitSource) -> TensorSplit:
    if isinstance(source, Dataset) and not isinstance(source, tuple):
        items = [source[i] for i in range(len(source))]  # type: ignore[arg-type]
        if not items:
            raise DatasetError(f"split '{name}': the Dataset is empty")
        if not all(isinstance(it, (tuple, list)) and len(it) in (2, 3) for it in items):
            raise DatasetError(f"split '{name}': Dataset items must be (image, y) or (image, y, b) tuples")
        source = tuple(torch.stack([torch.as_tensor(it[j]) for it in items]) for j in range(len(items[0])))
    if not isinstance(source, (tuple, list)) or len(source) not in (2, 3):
        raise DatasetError(f"split '{name}': expected (images, y) or (images, y, b) tensors, or a torch Dataset of such items")
    images = _uint8(name, torch.as_tensor(np.asarray(source[0]) if not isinstance(source[0], torch.Tensor) else source[0]))
    y = torch.as_tensor(source[1]).long().flatten()
    b = torch.as_tensor(source[2]).long().flatten() if len(source) == 3 else torch.full_like(y, UNKNOWN_BIAS)
    if not (len(images) == len(y) == len(b)):
        raise DatasetError(f"split '{name}': {len(images)} images, {len(y)} labels y and {len(b)} bias labels b; give one of each per image")
    return TensorSplit(name, images, y, b, ImageSpec(images.shape[-1], images.shape[1], (0.5,) * images.shape[1], (0.5,) * images.shape[1]))


def _uint8(name: str, images: torch.Tensor) -> torch.Tensor:
    if images.ndim == 3:  # N x H x W: one channel
        images = images[:, None]
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[2] != images.shape[3]:
        raise DatasetError(f"split '{name}': images must be N x C x H x W with C = 1 or 3 and H = W, got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.contiguous()
    if not images.is_floating_point() or images.min() < 0 or images.max() > 1:
        raise DatasetError(f"split '{name}': float images must be in [0, 1] (or give uint8 in 0..255), got {images.dtype} "
                           f"in [{float(images.min()):g}, {float(images.max()):g}]")  # fmt: skip
    return (images * 255).round().to(torch.uint8).contiguous()
