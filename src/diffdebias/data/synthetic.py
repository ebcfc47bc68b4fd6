"""Synthetic sets written by the diffusion engine, loaded like any other dataset (bias unknown)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from ..io import file_digest
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
        labels = np.load(root / "labels.npy", allow_pickle=False)
    except (OSError, ValueError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{root}: synthetic set cannot be read ({exc}); sample it again") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{root / 'meta.json'}: expected a JSON object; sample the set again")
    digests = meta.get("digest", {})
    if not isinstance(digests, dict):
        raise DatasetError(f"{root / 'meta.json'}: field 'digest' must map file names to digests; sample the set again")
    for name, digest in digests.items():
        if name in ("images.npy", "labels.npy") and file_digest(root / name) != digest:
            raise DatasetError(f"{root / name}: does not match the digest in meta.json (damaged or changed); sample the set again")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DatasetError(f"{root / 'labels.npy'}: expected a 1-D integer array (one class per image), got {labels.dtype} {labels.shape}")
    labels = labels.astype(np.int64)
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels) or images.shape[1] not in (1, 3) \
            or images.shape[2] != images.shape[3] or images.shape[2] < 1:
        raise DatasetError(f"{root / 'images.npy'}: expected uint8 (N, C, H, W), C 1 or 3, H = W, with one label per image in labels.npy")
    if len(labels) < 3:
        raise DatasetError(f"{root}: a synthetic set needs at least 3 images to form train / val / test splits")
    num_classes = meta.get("num_classes", int(labels.max()) + 1)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise DatasetError(f"{root / 'meta.json'}: field 'num_classes' must be a positive integer, got {num_classes!r}")
    class_names = meta.get("class_names")
    if class_names is not None and not (isinstance(class_names, list) and len(class_names) == num_classes):
        raise DatasetError(f"{root / 'meta.json'}: field 'class_names' must list one name per class ({num_classes})")
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
    return BiasedDataset("synthetic", splits, num_classes, 0, spec, class_names, None, info)
