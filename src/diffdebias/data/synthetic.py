"""Synthetic sets written by the diffusion engine, loaded like any other dataset (bias unknown)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .base import UNKNOWN_BIAS, BiasedDataset, ImageSpec, TensorSplit
from .registry import register_dataset

SPLIT_FRACTIONS = (0.9, 0.05, 0.05)  # train / val / test, random but deterministic


@register_dataset(
    "synthetic",
    description="a synthetic set sampled by `diffdebias diffusion sample` (images + class labels; bias unknown)",
    layout="images.npy (uint8 N x C x H x W), labels.npy (int64 N), meta.json",
    obtain="diffdebias diffusion sample --run DIR --per-class N (prints the folder)",
    required=("images.npy", "labels.npy", "meta.json"),
    default_root="synthetic",
    options={"seed": 0},
)
def synthetic(root: Path, ratio: float | None, seed: int = 0) -> BiasedDataset:
    try:
        meta = json.loads((root / "meta.json").read_text())
        images = np.load(root / "images.npy", allow_pickle=False)
        labels = np.load(root / "labels.npy", allow_pickle=False).astype(np.int64)
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{root}: synthetic set cannot be read ({exc}); sample it again") from None
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
        raise DatasetError(f"{root / 'images.npy'}: expected uint8 (N, C, H, W) with one label per image in labels.npy")
    num_classes = int(meta.get("num_classes", labels.max() + 1))
    if len(labels) < 3:
        raise DatasetError(f"{root}: a synthetic set needs at least 3 images to form train / val / test splits")
    order = np.random.default_rng(seed).permutation(len(labels))
    n_held = max(1, int(round(SPLIT_FRACTIONS[1] * len(labels))))
    parts = {"val": order[:n_held], "test": order[n_held : 2 * n_held], "train": order[2 * n_held :]}
    c = images.shape[1]
    spec = ImageSpec(images.shape[-1], c, (0.0,) * c, (1.0,) * c)
    splits = {}
    for name, idx in parts.items():
        idx = np.sort(np.asarray(idx, dtype=np.int64))
        splits[name] = TensorSplit(name, images[idx], labels[idx], np.full(len(idx), UNKNOWN_BIAS), spec)
    info = {k: meta.get(k) for k in ("source_dataset", "source_ratio", "sampler", "steps", "w", "per_class", "key")}
    return BiasedDataset("synthetic", splits, num_classes, 0, spec, meta.get("class_names"), None, info)
