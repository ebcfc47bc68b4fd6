"""Corrupted Fashion-MNIST and Corrupted CIFAR-10: one image corruption per class (LfF protocol).

The bias b of a sample is the index of its corruption in
:data:`~diffdebias.data.corruptions.CORRUPTION_ORDER`; class c is aligned with corruption c.
Train / val / test follow :func:`~diffdebias.data.injected.build_injected`.

``severity`` (option, default 4) is on the Hendrycks & Dietterich scale 1..5. LfF's
"Severity{s}" folders were made with H&D severity s + 1 (its make_dataset.py passes
``severity + 1``), so LfF's Severity4 datasets correspond to ``severity=5`` here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError, DatasetError
from .base import BiasedDataset, ImageSpec
from .colored import FMNIST_CLASSES, FMNIST_FILES, RATIOS
from .corruptions import CORRUPTION_ORDER, corrupt_by_label
from .idx import load_mnist_like
from .injected import build_injected, protocol_settings
from .registry import register_dataset

RENDER_VERSION = 1  # bump when a corruption's output changes: cached builds are then rebuilt
CORRUPTED_OPTIONS = {"seed": 0, "val_mode": "heldout", "val_fraction": 0.1, "severity": 4, "cache": True, "bias_mode": "class"}
# Grayscale kept as is; no normalisation (pixels in [0, 1]), like colored_fmnist and LfF's MNIST models.
FMNIST_SPEC = ImageSpec(28, 1, (0.0,), (1.0,))
# LfF's normalisation for Corrupted CIFAR-10.
CIFAR_SPEC = ImageSpec(32, 3, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch.bin"
CIFAR_RECORD = 1 + 3 * 32 * 32


def render_corrupted(images: np.ndarray, b: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """uint8 (N, H, W) or (N, H, W, C) -> uint8 (N, C, H, W), image i corrupted by CORRUPTION_ORDER[b[i]]."""
    x = images[..., None] if images.ndim == 3 else images
    return np.ascontiguousarray(corrupt_by_label(x, b, severity, rng).transpose(0, 3, 1, 2))


def _build_corrupted(name: str, source, spec: ImageSpec, class_names: list[str], ratio: float, **opts) -> BiasedDataset:
    severity = opts["severity"]
    if severity not in range(1, 6):
        raise ConfigError(f"dataset '{name}' option 'severity' must be an integer in 1..5, got {severity!r}")
    severity = int(severity)
    return build_injected(
        name,
        source,
        lambda x, b, rng: render_corrupted(x, b, rng, severity),
        {"bias": "corruption", "severity": severity, "corruptions": list(CORRUPTION_ORDER), "render_version": RENDER_VERSION},
        num_bias=len(CORRUPTION_ORDER),
        ratio=ratio,
        spec=spec,
        class_names=class_names,
        bias_names=list(CORRUPTION_ORDER),
        **protocol_settings(opts),
    )


@register_dataset(
    "corrupted_fmnist",
    description="Fashion-MNIST with one image corruption per class (LfF Corrupted CIFAR-10 protocol, grayscale 28px); bias = corruption",
    **FMNIST_FILES,
    ratios=RATIOS,
    default_ratio=1.0,
    any_ratio=True,
    options=CORRUPTED_OPTIONS,
)
def corrupted_fmnist(root: Path, ratio: float, **opts) -> BiasedDataset:
    return _build_corrupted("corrupted_fmnist", load_mnist_like(root), FMNIST_SPEC, FMNIST_CLASSES, ratio, **opts)


def read_cifar_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch -> (images N x 32 x 32 x 3 uint8, labels N); a bad file raises a DatasetError naming it."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read CIFAR-10 batch ({exc}); re-extract cifar-10-binary.tar.gz") from None
    if data.size == 0 or data.size % CIFAR_RECORD:
        raise DatasetError(
            f"{path}: {data.size} bytes is not a whole number of {CIFAR_RECORD}-byte CIFAR-10 records "
            "(1 label byte + 3072 pixel bytes); the file is truncated or not a CIFAR-10 binary batch; re-extract cifar-10-binary.tar.gz"
        )
    records = data.reshape(-1, CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise DatasetError(
            f"{path}: record {bad} has label {labels[bad]} outside 0..9; not a CIFAR-10 batch (CIFAR-100 binaries have two label bytes)"
        )
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def load_cifar10_bin(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'train': (images N x 32 x 32 x 3, labels), 'test': (...)} from a cifar-10-batches-bin folder."""
    train = [read_cifar_bin(root / f) for f in CIFAR_TRAIN_FILES]
    return {
        "train": (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
        "test": read_cifar_bin(root / CIFAR_TEST_FILE),
    }


@register_dataset(
    "corrupted_cifar10",
    description="CIFAR-10 with one image corruption per class (LfF Corrupted CIFAR-10 protocol, built from the clean images); bias = corruption",
    layout="the folder cifar-10-batches-bin of the CIFAR-10 binary version: data_batch_1.bin .. data_batch_5.bin and test_batch.bin "
    "(records of 1 label byte + 3072 pixel bytes: R, G, B planes of 32x32)",
    obtain="download cifar-10-binary.tar.gz ('CIFAR-10 binary version') from https://www.cs.toronto.edu/~kriz/cifar.html, "
    "extract it and pass its cifar-10-batches-bin folder with --root",
    required=(*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE),
    default_root="cifar-10-batches-bin",
    ratios=RATIOS,
    default_ratio=1.0,
    any_ratio=True,
    options=CORRUPTED_OPTIONS,
)
def corrupted_cifar10(root: Path, ratio: float, **opts) -> BiasedDataset:
    return _build_corrupted("corrupted_cifar10", load_cifar10_bin(root), CIFAR_SPEC, CIFAR_CLASSES, ratio, **opts)
