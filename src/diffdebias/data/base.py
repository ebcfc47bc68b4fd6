"""One abstraction for biased datasets: splits of (image, y, b, index) with group tables.

Every split yields ``(image, y, b, index)`` where ``image`` is a float tensor (C, H, W)
normalised by the dataset's :class:`ImageSpec`, ``y`` the target, ``b`` the bias label and
``index`` the position in the split. Where a dataset has no bias labels, ``b`` is
:data:`UNKNOWN_BIAS` (-1).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DatasetError

UNKNOWN_BIAS = -1
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ImageSpec:
    """Square images of side `size` with `channels` channels, normalised by mean / std."""

    size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.size < 1 or self.channels not in (1, 3):
            raise DatasetError(f"image spec: size must be >= 1 and channels 1 or 3, got {self.size}, {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise DatasetError("image spec: mean and std need one value per channel")


class Preprocess:
    """uint8 batch (N, C, H, W) -> float batch resized to ``spec.size`` and normalised."""

    def __init__(self, spec: ImageSpec):
        self.spec = spec
        self._mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
        self._std = torch.tensor(spec.std).view(1, -1, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().div_(255.0)
        if x.shape[1] != self.spec.channels:
            x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x.mean(dim=1, keepdim=True)
        if x.shape[-1] != self.spec.size or x.shape[-2] != self.spec.size:
            x = F.interpolate(x, size=(self.spec.size, self.spec.size), mode="bilinear", antialias=True, align_corners=False)
        return (x - self._mean) / self._std


class Split(Dataset, ABC):
    """A split of a biased dataset; subclasses say where the pixels come from."""

    in_memory = False

    def __init__(self, name: str, y: Sequence[int], b: Sequence[int], spec: ImageSpec):
        self.name = name
        self.y = torch.as_tensor(np.asarray(y, dtype=np.int64))
        self.b = torch.as_tensor(np.asarray(b, dtype=np.int64))
        if self.y.ndim != 1 or self.y.shape != self.b.shape:
            raise DatasetError(f"split '{name}': y and b must be 1-D and of equal length")
        self.spec = spec
        self.preprocess = Preprocess(spec)

    def __len__(self) -> int:
        return int(self.y.numel())

    @abstractmethod
    def load_uint8(self, index: int) -> torch.Tensor:
        """The raw image as uint8 (C, H, W)."""

    def __getitem__(self, index: int):
        x = self.preprocess(self.load_uint8(index).unsqueeze(0))[0]
        return x, int(self.y[index]), int(self.b[index]), int(index)

    def batch(self, indices: torch.Tensor):
        """A whole batch at once: (images, y, b, indices)."""
        raw = torch.stack([self.load_uint8(int(i)) for i in indices])
        return self.preprocess(raw), self.y[indices], self.b[indices], indices

    def with_spec(self, spec: ImageSpec) -> "Split":
        """A view of this split with another image size / normalisation."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.spec = spec
        clone.preprocess = Preprocess(spec)
        return clone

    @abstractmethod
    def subset(self, indices: Sequence[int] | torch.Tensor, name: str | None = None) -> "Split":
        """The samples at `indices`, as a split of the same kind."""

    def with_labels(self, y: torch.Tensor, b: torch.Tensor) -> "Split":
        """A view of this split with other labels (e.g. the bias as the target, for audits)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.y, clone.b = torch.as_tensor(y, dtype=torch.long), torch.as_tensor(b, dtype=torch.long)
        return clone

    @property
    def has_bias_labels(self) -> bool:
        return bool(len(self) and (self.b != UNKNOWN_BIAS).all())


class TensorSplit(Split):
    """A split held in memory as a uint8 tensor (N, C, H, W)."""

    in_memory = True

    def __init__(self, name: str, images: torch.Tensor | np.ndarray, y, b, spec: ImageSpec):
        super().__init__(name, y, b, spec)
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] != len(self):
            raise DatasetError(f"split '{name}': images must be uint8 (N, C, H, W) with N = {len(self)}")
        self.images = images

    def load_uint8(self, index: int) -> torch.Tensor:
        return self.images[index]

    def batch(self, indices: torch.Tensor):
        return self.preprocess(self.images[indices]), self.y[indices], self.b[indices], indices

    def subset(self, indices, name: str | None = None) -> "TensorSplit":
        idx = torch.as_tensor(indices, dtype=torch.long)
        return TensorSplit(name or self.name, self.images[idx], self.y[idx], self.b[idx], self.spec)


class FileSplit(Split):
    """A split whose images are files on disk, decoded and resized on access."""

    def __init__(self, name: str, paths: Sequence[Path], y, b, spec: ImageSpec):
        super().__init__(name, y, b, spec)
        self.paths = [Path(p) for p in paths]
        if len(self.paths) != len(self):
            raise DatasetError(f"split '{name}': {len(self.paths)} paths for {len(self)} labels")

    def load_uint8(self, index: int) -> torch.Tensor:
        return load_image(self.paths[index], self.spec.size, self.spec.channels)

    def subset(self, indices, name: str | None = None) -> "FileSplit":
        idx = torch.as_tensor(indices, dtype=torch.long)
        return FileSplit(name or self.name, [self.paths[i] for i in idx.tolist()], self.y[idx], self.b[idx], self.spec)


def load_image(path: Path, size: int, channels: int) -> torch.Tensor:
    """Decode an image file to uint8 (C, size, size); a bad file raises a DatasetError naming it."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB" if channels == 3 else "L")
            if im.size != (size, size):  # shorter side to `size`, then a centre crop (no stretching)
                scale = size / min(im.size)
                im = im.resize((max(size, round(im.width * scale)), max(size, round(im.height * scale))), Image.Resampling.BILINEAR)
                left, top = (im.width - size) // 2, (im.height - size) // 2
                im = im.crop((left, top, left + size, top + size))
            arr = np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise DatasetError(f"{path}: image file is missing; restore it or remove its row from the dataset") from None
    except Exception as exc:  # noqa: BLE001 - decoders raise many types (OSError, SyntaxError, struct.error, ...) on bad files
        raise DatasetError(f"{path}: cannot read image ({type(exc).__name__}: {exc}); replace the file or remove its row") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


@dataclass
class BiasedDataset:
    """A dataset with a target and a bias attribute, split into train / val / test (and extras)."""

    name: str
    splits: dict[str, Split]
    num_classes: int
    num_bias: int
    spec: ImageSpec
    class_names: list[str] | None = None
    bias_names: list[str] | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split_name in SPLITS:
            if split_name not in self.splits:
                raise DatasetError(f"dataset '{self.name}' has no '{split_name}' split")
        for split in self.splits.values():
            check_labels(split, self.num_classes, self.num_bias, source=f"{self.name}/{split.name}")

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise DatasetError(f"dataset '{self.name}' has no split '{name}'; it has {sorted(self.splits)}")
        return self.splits[name]

    def with_spec(self, spec: ImageSpec) -> "BiasedDataset":
        return replace(self, splits={k: s.with_spec(spec) for k, s in self.splits.items()}, spec=spec)

    def group_counts(self, split: str) -> pd.DataFrame:
        """Counts of the (y, b) cells of a split: rows are classes, columns bias values."""
        return group_table(self.split(split), self.num_classes, self.num_bias)

    def aligned_bias(self) -> np.ndarray | None:
        """Each class's aligned bias value (its majority in training); None without training bias labels."""
        if not self.split("train").has_bias_labels or not self.num_bias:
            return None
        return majority_bias(self.group_counts("train").to_numpy()[:, : self.num_bias])

    def conflicting(self, split: str) -> torch.Tensor | None:
        """Which samples of `split` are truly bias-conflicting; None without bias labels."""
        aligned, s = self.aligned_bias(), self.split(split)
        return None if aligned is None or not s.has_bias_labels else bias_conflicting(s.y, s.b, aligned)

    def conflicting_fraction(self, split: str) -> float | None:
        """Fraction of truly bias-conflicting samples of `split` (None without bias labels)."""
        mask = self.conflicting(split)
        return None if mask is None else float(mask.float().mean())


def majority_bias(train_counts: np.ndarray) -> np.ndarray:
    """For each class, the bias value it co-occurs with most in training (the aligned value)."""
    return np.asarray(train_counts).argmax(axis=1)


def bias_conflicting(y, b, aligned: np.ndarray):
    """THE definition of bias-conflicting: the bias value is not its class's aligned value.
    Works on numpy arrays and torch tensors alike (returns the same kind)."""
    if isinstance(y, torch.Tensor):
        return torch.as_tensor(b) != torch.as_tensor(aligned)[y]
    return np.asarray(b) != np.asarray(aligned)[np.asarray(y)]


def group_table(split: Split, num_classes: int, num_bias: int) -> pd.DataFrame:
    cols = list(range(num_bias)) if num_bias else []
    unknown = bool((split.b == UNKNOWN_BIAS).any())
    table = pd.DataFrame(0, index=pd.Index(range(num_classes), name="y"), columns=cols + (["unknown"] if unknown else []))
    table.columns.name = "b"
    y = split.y.numpy()
    b = split.b.numpy()
    if len(y) == 0:
        return table
    pairs, counts = np.unique(np.stack([y, b], axis=1), axis=0, return_counts=True)
    for (yy, bb), n in zip(pairs, counts):
        table.loc[int(yy), "unknown" if bb == UNKNOWN_BIAS else int(bb)] = int(n)
    return table


def check_labels(split: Split, num_classes: int, num_bias: int, *, source: str) -> None:
    """Refuse empty splits and labels out of range, naming the source and the field."""
    if len(split) == 0:
        raise DatasetError(f"{source}: the split is empty; check that the files of this split are where the layout expects them")
    y, b = split.y, split.b
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        bad = int(y[(y < 0) | (y >= num_classes)][0])
        raise DatasetError(f"{source}: field 'y' has value {bad} outside 0..{num_classes - 1}; fix the label")
    known = b[b != UNKNOWN_BIAS]
    if len(known) and (int(known.min()) < 0 or int(known.max()) >= max(num_bias, 1)):
        bad = int(known[(known < 0) | (known >= num_bias)][0])
        raise DatasetError(
            f"{source}: field 'b' (bias) has value {bad} outside 0..{num_bias - 1} (use {UNKNOWN_BIAS} for unknown); fix the label"
        )


def holdout(split: Split, fraction: float, seed: int, *, stratify: torch.Tensor | None = None) -> tuple[Split, Split]:
    """Split off a random `fraction` of `split` (stratified by `stratify` when given)."""
    gen = np.random.default_rng(seed)
    keys = (stratify if stratify is not None else torch.zeros(len(split), dtype=torch.long)).numpy()
    held: list[int] = []
    for key in np.unique(keys):
        members = np.flatnonzero(keys == key)
        gen.shuffle(members)
        held.extend(members[: int(round(fraction * len(members)))].tolist())
    mask = np.zeros(len(split), dtype=bool)
    mask[held] = True
    return split.subset(np.flatnonzero(~mask), split.name), split.subset(np.flatnonzero(mask), "val")
