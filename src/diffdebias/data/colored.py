"""Colored Fashion-MNIST and Colored MNIST: each class tinted with its own colour (LfF protocol)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import BiasedDataset, ImageSpec
from .idx import load_mnist_like
from .injected import build_injected, protocol_settings
from .registry import register_dataset

# Ten colours of distinct chromaticity (the foreground intensity scales them, so no two are
# multiples of each other).
COLORS = np.array(
    [
        [1.0, 0.0, 0.0],  # red
        [0.0, 1.0, 0.0],  # green
        [0.0, 0.0, 1.0],  # blue
        [1.0, 1.0, 0.0],  # yellow
        [1.0, 0.0, 1.0],  # magenta
        [0.0, 1.0, 1.0],  # cyan
        [1.0, 0.5, 0.0],  # orange
        [0.5, 0.0, 1.0],  # violet
        [0.0, 1.0, 0.5],  # spring green
        [1.0, 1.0, 1.0],  # white
    ],
    dtype=np.float32,
)
COLOR_NAMES = ["red", "green", "blue", "yellow", "magenta", "cyan", "orange", "violet", "spring", "white"]
FMNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
RATIOS = (0.5, 1.0, 2.0, 5.0)
SPEC = ImageSpec(28, 3, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
COLORED_OPTIONS = {"seed": 0, "val_mode": "heldout", "val_fraction": 0.1, "color_std": 0.01, "cache": True, "bias_mode": "class"}
DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")


def colorize(gray: np.ndarray, b: np.ndarray, rng: np.random.Generator, std: float) -> np.ndarray:
    """Tint the foreground of (N, 28, 28) uint8 images with COLORS[b] plus N(0, std) colour noise."""
    colors = np.clip(COLORS[b] + rng.normal(0.0, std, size=(len(b), 3)).astype(np.float32), 0.0, 1.0)
    out = gray[:, None, :, :].astype(np.float32) * colors[:, :, None, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _build_colored(name: str, root: Path, ratio: float, class_names: list[str], **opts) -> BiasedDataset:
    std = float(opts["color_std"])
    ds = build_injected(
        name,
        load_mnist_like(root),
        lambda x, b, rng: colorize(x, b, rng, std),
        {"bias": "foreground colour", "color_std": std},
        num_bias=10,
        ratio=ratio,
        spec=SPEC,
        class_names=class_names,
        bias_names=COLOR_NAMES,
        **protocol_settings(opts),
    )
    ds.info["bias_invariant_view"] = "channel_max"  # the tint is removed by the max over RGB
    return ds


IDX_LAYOUT = "a folder with train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz), t10k-images-idx3-ubyte(.gz), t10k-labels-idx1-ubyte(.gz)"
IDX_REQUIRED = ("train-images-idx3-ubyte*", "train-labels-idx1-ubyte*", "t10k-images-idx3-ubyte*", "t10k-labels-idx1-ubyte*")
# Where every Fashion-MNIST-based dataset finds its files.
FMNIST_FILES = {
    "layout": IDX_LAYOUT,
    "obtain": "apt-get install dataset-fashion-mnist (installs /usr/share/datasets/fashion-mnist), or the IDX files from the Fashion-MNIST GitHub repository",
    "required": IDX_REQUIRED,
    "default_root": lambda: DEBIAN_FMNIST,
}


@register_dataset(
    "colored_fmnist",
    description="Fashion-MNIST with one foreground colour per class (LfF Colored-MNIST protocol); bias = colour",
    **FMNIST_FILES,
    ratios=RATIOS,
    default_ratio=1.0,
    any_ratio=True,
    options=COLORED_OPTIONS,
)
def colored_fmnist(root: Path, ratio: float, **opts) -> BiasedDataset:
    return _build_colored("colored_fmnist", root, ratio, FMNIST_CLASSES, **opts)


@register_dataset(
    "colored_mnist",
    description="MNIST digits with one foreground colour per class (LfF Colored-MNIST protocol); bias = colour",
    layout=IDX_LAYOUT,
    obtain="the MNIST IDX files (e.g. Debian's package mnist, or torchvision's MNIST raw/ folder); pass --root",
    required=IDX_REQUIRED,
    default_root="mnist",
    ratios=RATIOS,
    default_ratio=1.0,
    any_ratio=True,
    options=COLORED_OPTIONS,
)
def colored_mnist(root: Path, ratio: float, **opts) -> BiasedDataset:
    return _build_colored("colored_mnist", root, ratio, [str(d) for d in range(10)], **opts)
