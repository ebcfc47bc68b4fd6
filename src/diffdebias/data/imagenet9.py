"""ImageNet-9 (ReBias, Bahng et al. 2020): nine super-classes of ImageNet, bias (texture) unlabelled.

A wnid's class index is its position in the sorted list of the 1000 folders of ``train/``; each
super-class is an inclusive range of those indices. Train comes from ``train/`` minus a seeded,
class-stratified 10% held out as val; test from ``val/`` (wnid-folder layout) and, when
``imagenet-a/`` exists, an extra split ``imagenet_a``. Wnids outside the nine ranges are dropped.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .base import UNKNOWN_BIAS, BiasedDataset, FileSplit, ImageSpec, holdout
from .folders import IMAGENET_MEAN, IMAGENET_STD, list_images
from .registry import register_dataset

SUPERCLASSES = (
    ("dog", (151, 268)),
    ("cat", (281, 285)),
    ("frog", (30, 32)),
    ("turtle", (33, 37)),
    ("bird", (80, 100)),
    ("primate", (365, 382)),
    ("fish", (389, 397)),
    ("crab", (118, 121)),
    ("insect", (300, 319)),
)
NUM_WNIDS = 1000
VAL_FRACTION = 0.1
LAYOUT = (
    "{root}/train/<wnid>/*.JPEG with all 1000 ImageNet class folders (n01440764 ...), optional {root}/val/<wnid>/*.JPEG "
    "(validation images sorted into wnid folders) and optional {root}/imagenet-a/<wnid>/*.jpg (ImageNet-A)"
)


def superclass(index: int) -> int | None:
    """The super-class of ImageNet class `index`, or None when it is in none of the nine ranges."""
    for k, (_, (lo, hi)) in enumerate(SUPERCLASSES):
        if lo <= index <= hi:
            return k
    return None


def _wnid_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _collect(folder: Path, wnid_index: dict[str, int], max_per_class: int, seed: int) -> tuple[list[Path], list[int]]:
    """Images of the wnid folders of `folder` that fall in a super-class, labelled by it."""
    dirs = _wnid_dirs(folder)
    if not dirs:
        raise DatasetError(f"{folder}: no wnid folders; images must be sorted into one folder per class ({LAYOUT})")
    paths: list[Path] = []
    y: list[int] = []
    for d in dirs:
        if d.name not in wnid_index:
            raise DatasetError(f"{d}: folder name is not one of the wnids in train/; every class folder must be an ImageNet wnid")
        k = superclass(wnid_index[d.name])
        if k is not None:
            found = list_images(d)
            paths += found
            y += [k] * len(found)
    if max_per_class > 0:
        rng = np.random.default_rng(seed)
        ya = np.asarray(y)
        keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(ya == k))[:max_per_class] for k in np.unique(ya)]))
        paths, y = [paths[i] for i in keep], ya[keep].tolist()
    return paths, y


def _split(name: str, folder: Path, wnid_index: dict[str, int], spec: ImageSpec, max_per_class: int, seed: int) -> FileSplit:
    paths, y = _collect(folder, wnid_index, max_per_class, seed)
    if not paths:
        raise DatasetError(f"{folder}: no images in the nine ImageNet-9 super-classes for split '{name}'")
    return FileSplit(name, paths, y, [UNKNOWN_BIAS] * len(y), spec)


@register_dataset(
    "imagenet9",
    description="ImageNet-9 (ReBias): 9 super-classes of ImageNet, texture bias unlabelled; test on ImageNet val and ImageNet-A",
    layout=LAYOUT,
    obtain="ImageNet (ILSVRC-2012) from image-net.org (sort val/ into wnid folders with the usual valprep script); "
    "ImageNet-A from github.com/hendrycks/natural-adv-examples",
    required=("train",),
    default_root="imagenet",
    options={"image_size": 224, "seed": 0, "max_per_class": 0},
)
def imagenet9(root: Path, ratio: None, image_size: int = 224, seed: int = 0, max_per_class: int = 0) -> BiasedDataset:
    spec = ImageSpec(int(image_size), 3, IMAGENET_MEAN, IMAGENET_STD)
    seed, max_per_class = int(seed), int(max_per_class)
    wnids = [d.name for d in _wnid_dirs(root / "train")]
    if len(wnids) != NUM_WNIDS:
        raise DatasetError(
            f"{root / 'train'}: found {len(wnids)} class folders, expected the {NUM_WNIDS} ImageNet wnid folders "
            f"(class indices are positions in their sorted list); layout: {LAYOUT}"
        )
    wnid_index = {w: i for i, w in enumerate(wnids)}
    full = _split("train", root / "train", wnid_index, spec, max_per_class, seed)
    train, val = holdout(full, VAL_FRACTION, seed, stratify=full.y)
    if len(val) == 0:
        raise DatasetError(
            f"{root / 'train'}: too few images per class (max_per_class={max_per_class}) to hold out {VAL_FRACTION:.0%} for val; "
            "use max_per_class >= 6 (or 0 for all)"
        )
    info: dict = {"superclasses": {n: list(r) for n, r in SUPERCLASSES}, "val_source": f"seeded {VAL_FRACTION:.0%} of train/ (seed {seed})"}
    if (root / "val").is_dir():
        test = _split("test", root / "val", wnid_index, spec, max_per_class, seed)
        info["test_source"] = str(root / "val")
    else:
        train, test = holdout(train, VAL_FRACTION / (1 - VAL_FRACTION), seed + 1, stratify=train.y)
        test.name = "test"
        info["test_source"] = f"seeded {VAL_FRACTION:.0%} of train/ (no val/ folder)"
        warnings.warn(f"imagenet9: {root / 'val'} not found; the test split is held out from train/ instead", stacklevel=2)
    splits = {"train": train, "val": val, "test": test}
    if (root / "imagenet-a").is_dir():
        splits["imagenet_a"] = _split("imagenet_a", root / "imagenet-a", wnid_index, spec, max_per_class, seed)
        info["extra_splits"] = ["imagenet_a"]
    return BiasedDataset("imagenet9", splits, len(SUPERCLASSES), 0, spec, class_names=[n for n, _ in SUPERCLASSES], info=info)
