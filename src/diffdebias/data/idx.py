"""Readers for the IDX files of MNIST and Fashion-MNIST (plain or gzip-compressed)."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np

from ..errors import DatasetError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file; a malformed file raises a DatasetError naming it."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: cannot read IDX file ({exc}); re-download or reinstall it") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise DatasetError(f"{path}: not an IDX file (bad magic number); expected MNIST-style *-idx?-ubyte files")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[data[2]])
    expected = header + math.prod(dims) * dtype.itemsize  # Python ints: a forged header cannot overflow
    if len(data) != expected:
        raise DatasetError(f"{path}: IDX file is truncated or padded ({len(data)} bytes, header says {expected})")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def find_idx(root: Path, stem: str) -> Path:
    """Find `stem` (e.g. 'train-images-idx3-ubyte') as a .gz or plain file under root."""
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{root}: missing {stem}(.gz); expected the four MNIST-style IDX files in this folder")


def load_mnist_like(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'train': (images N x 28 x 28 uint8, labels N), 'test': (...)} from an IDX folder."""
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(find_idx(root, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(find_idx(root, f"{prefix}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetError(f"{root}: {prefix} images {images.shape} and labels {labels.shape} do not match")
        if labels.max(initial=0) > 9:
            raise DatasetError(f"{root}: {prefix} labels hold {int(labels.max())}; MNIST-style labels are 0..9")
        out[split] = (np.ascontiguousarray(images, dtype=np.uint8), labels.astype(np.int64))
    return out
