"""Two Fashion-MNIST classes tinted red or green: a small fair-generation task (DDM).

The classes (default Trouser and Sneaker) are relabelled 0 and 1; class c's majority colour is
colour c, and exactly `ratio`% of each class's training samples get the other colour (default
10%: a 90/10 attribute imbalance within each class, with opposite majorities, so a generator
conditioned on the class is unfair both in FD and in SPD). Validation is held out with the same
ratio; the test split (official test images) is balanced over the (class, colour) cells. The
attribute is the dataset's bias `b`. Option `size` sets the image side the data is served at.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .base import BiasedDataset, ImageSpec
from .colored import COLOR_NAMES, COLORED_OPTIONS, FMNIST_CLASSES, FMNIST_FILES, colorize
from .idx import load_mnist_like
from .injected import build_injected
from .registry import register_dataset


@register_dataset(
    "colored_fmnist_pair",
    description="two Fashion-MNIST classes, each mostly red or mostly green (attribute = colour, 2 groups); for fair generation (DDM)",
    **FMNIST_FILES,
    ratios=(1.0, 5.0, 10.0, 20.0),
    default_ratio=10.0,
    any_ratio=True,
    options={**COLORED_OPTIONS, "classes": "1,7", "size": 28},
)
def colored_fmnist_pair(root: Path, ratio: float, classes: str = "1,7", size: int = 28, **opts) -> BiasedDataset:
    try:
        chosen = [int(c) for c in str(classes).split(",")]
    except ValueError:
        chosen = []
    if len(chosen) != 2 or len(set(chosen)) != 2 or not all(0 <= c <= 9 for c in chosen):
        raise ConfigError(f"dataset 'colored_fmnist_pair' option 'classes' must be two distinct Fashion-MNIST class ids 0..9 like '1,7', got {classes!r}")
    if not 8 <= int(size) <= 64:
        raise ConfigError(f"dataset 'colored_fmnist_pair' option 'size' must be in 8..64, got {size}")
    source = {}
    for split, (images, labels) in load_mnist_like(root).items():
        keep = np.isin(labels, chosen)
        source[split] = (images[keep], (labels[keep] == chosen[1]).astype(np.int64))  # chosen[0] -> 0, chosen[1] -> 1
    std = float(opts["color_std"])
    ds = build_injected(
        "colored_fmnist_pair",
        source,
        lambda x, b, rng: colorize(x, b, rng, std),
        {"bias": "foreground colour (red / green)", "color_std": std, "classes": chosen},
        num_bias=2,
        ratio=ratio,
        seed=int(opts["seed"]),
        val_mode=opts["val_mode"],
        val_fraction=float(opts["val_fraction"]),
        spec=ImageSpec(28, 3, (0.0,) * 3, (1.0,) * 3),
        class_names=[FMNIST_CLASSES[c] for c in chosen],
        bias_names=COLOR_NAMES[:2],
        cache=bool(opts["cache"]),
    )
    ds.info["bias_invariant_view"] = "channel_max"
    ds.info["size"] = int(size)
    return ds if int(size) == 28 else ds.with_spec(ImageSpec(int(size), 3, (0.0,) * 3, (1.0,) * 3))
