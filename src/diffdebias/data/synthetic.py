"""The synthetic-set folder, owned here: its one writer, verifier and reader (dataset `synthetic`).

A synthetic set is a folder with `images.npy` (uint8 N x C x H x W), `labels.npy` (int64), any
extra per-image arrays (DiffuBias: `sources.npy`), PNG grids and `meta.json`, written last, with
the digest of every array: a folder is complete only when every array matches its digest. DDB's
sampled sets (diffusion/synthetic.py) and DiffuBias's generated images are written by
`write_synthetic_set`; both load as dataset `synthetic` (bias unknown).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import DatasetError
from ..io import atomic_path, file_digest, write_json_atomic
from .base import UNKNOWN_BIAS, BiasedDataset, ImageSpec, TensorSplit
from .registry import register_dataset

SPLIT_FRACTIONS = (0.9, 0.05, 0.05)  # train / val / test, random but deterministic
ARRAYS = ("images.npy", "labels.npy")


def write_synthetic_set(out: Path, images: np.ndarray, labels: np.ndarray, meta: dict[str, Any], num_classes: int,
                        extra_arrays: dict[str, np.ndarray] | None = None) -> None:  # fmt: skip
    """Write a synthetic set into `out`: each array atomically, the grids, then `meta.json` (with
    the arrays' digests, the image count and shape) last, so that a set cut short is never complete."""
    out.mkdir(parents=True, exist_ok=True)
    arrays = {"images.npy": np.asarray(images, dtype=np.uint8), "labels.npy": np.asarray(labels, dtype=np.int64)}
    arrays |= {f"{k}.npy": np.asarray(v) for k, v in (extra_arrays or {}).items()}
    for name, arr in arrays.items():
        with atomic_path(out / name) as tmp, open(tmp, "wb") as fh:
            np.save(fh, arr)
    write_grids(out, arrays["images.npy"], arrays["labels.npy"], num_classes)
    write_json_atomic(out / "meta.json", {
        "digest": {name: file_digest(out / name) for name in arrays}, "num_images": int(len(labels)), "num_classes": num_classes,
        "channels": int(images.shape[1]), "image_size": int(images.shape[-1]), **meta,
    })  # fmt: skip


def is_complete(out: Path) -> bool:
    """meta.json exists, every array it lists matches its digest, and images and labels have its image count."""
    out = Path(out)
    try:
        meta = json.loads((out / "meta.json").read_text())
        if set(ARRAYS) - set(meta["digest"]) or any(d != file_digest(out / name) for name, d in meta["digest"].items()):
            return False
        labels = np.load(out / "labels.npy", allow_pickle=False)
        images = np.load(out / "images.npy", allow_pickle=False, mmap_mode="r")
        return len(labels) == len(images) == meta["num_images"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, json.JSONDecodeError):
        return False


def write_grids(out: Path, images: np.ndarray, labels: np.ndarray, num_classes: int, per_row: int = 8) -> None:
    """grid_class{c}.png (up to 8 x 8 samples of class c) and grid.png (one row of 8 per class)."""
    def tile(batch: np.ndarray, cols: int) -> Image.Image:
        n, c, h, w = batch.shape
        rows = -(-n // cols)
        canvas = np.zeros((rows * (h + 2), cols * (w + 2), c), dtype=np.uint8)
        for i, img in enumerate(batch):
            r, k = divmod(i, cols)
            canvas[r * (h + 2) + 1 : r * (h + 2) + 1 + h, k * (w + 2) + 1 : k * (w + 2) + 1 + w] = img.transpose(1, 2, 0)
        im = Image.fromarray(canvas[:, :, 0] if c == 1 else canvas)
        return im.resize((im.width * 2, im.height * 2), Image.Resampling.NEAREST)

    def save(im: Image.Image, name: str) -> None:
        with atomic_path(out / name) as tmp:
            im.save(tmp, format="PNG")

    for c in range(num_classes):
        save(tile(images[labels == c][: per_row * per_row], per_row), f"grid_class{c}.png")
    rows = [images[labels == c][:per_row] for c in range(num_classes)]
    save(tile(np.concatenate([np.pad(r, ((0, per_row - len(r)), (0, 0), (0, 0), (0, 0))) for r in rows]), per_row), "grid.png")


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
        if name in ARRAYS and file_digest(root / name) != digest:
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
