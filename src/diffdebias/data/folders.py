"""Folder datasets of LfF / DFA / BiasEnsemble: labels live in file names ending ``_{y}_{b}.png``.

Layouts (``{pct}`` is ``0.5pct``, ``1pct``, ``2pct`` or ``5pct``)::

    cmnist, cifar10c:  {root}/{pct}/{align,conflict}/...   valid: {root}/{pct}/valid/ or {root}/valid/   test: {root}/test/
    bffhq:             {root}/0.5pct/{align,conflict}/      {root}/valid/                              {root}/test/
    bar:               {root}/train/align/, {root}/train/conflict/{pct}/ ({pct} = 1pct or 1), {root}/valid/, {root}/test/

Folders are searched recursively (files may sit in per-class subfolders). Hidden files and
folders (names starting with '.') are ignored; every other file must be an image whose name
ends in ``_{y}_{b}.{png,jpg,jpeg}``, anything else is an error.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import DatasetError
from .base import BiasedDataset, FileSplit, ImageSpec
from .registry import register_dataset

IMAGE_EXTS = (".png", ".jpg", ".jpeg")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The CIFAR statistics used by LfF and DFA for Corrupted CIFAR-10.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
NAME_PATTERN = "<anything>_{y}_{b}.png (or .jpg / .jpeg), e.g. 00012_3_7.png"
_NAME_RE = re.compile(r"_(-?\d+)_(-?\d+)\.(?:png|jpe?g)$", re.IGNORECASE)


def list_images(folder: Path, exts: tuple[str, ...] = IMAGE_EXTS) -> list[Path]:
    """Every non-hidden file under `folder` (recursively, sorted); a non-image file or a link leaving `folder` is an error."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: folder not found; check the dataset layout")
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    inside = folder.resolve()
    for p in files:
        if p.suffix.lower() not in exts:
            raise DatasetError(f"{p}: not an image file (expected one of {', '.join(exts)}); remove it from {folder}")
        if p.is_symlink() and not p.resolve().is_relative_to(inside):  # rglob does not enter linked folders
            raise DatasetError(f"{p}: a symbolic link to {p.resolve()}, outside {folder}; dataset files must lie inside their folder: "
                               "copy the file in or remove the link")
    return files


def parse_label_name(path: Path, *, allow_unknown_bias: bool = False) -> tuple[int, int]:
    """(y, b) from a file name ending ``_{y}_{b}.png``; a name without that ending is an error."""
    m = _NAME_RE.search(path.name)
    if m is None:
        raise DatasetError(f"{path}: file name does not match the pattern {NAME_PATTERN}; rename the file or remove it")
    y, b = int(m.group(1)), int(m.group(2))
    if b == -1 and not allow_unknown_bias:
        raise DatasetError(f"{path}: bias label -1 (unknown) in the file name is not allowed for this dataset; give the bias label")
    return y, b


def labelled_split(name: str, folders: list[Path], spec: ImageSpec, *, allow_unknown_bias: bool = False) -> FileSplit:
    """A FileSplit of every image under `folders`, labelled from the file names."""
    paths: list[Path] = []
    for folder in folders:
        found = list_images(folder)
        if not found:
            raise DatasetError(f"{folder}: no images found for split '{name}'; check that the files of this split are there")
        paths.extend(found)
    labels = [parse_label_name(p, allow_unknown_bias=allow_unknown_bias) for p in paths]
    return FileSplit(name, paths, [y for y, _ in labels], [b for _, b in labels], spec)


def pct_dir(parent: Path, ratio: float, *, bare: bool = False) -> Path:
    """``{parent}/{ratio}pct`` (or ``{parent}/{ratio}`` when `bare` and that one exists)."""
    candidates = [parent / f"{ratio:g}pct"] + ([parent / f"{ratio:g}"] if bare else [])
    for c in candidates:
        if c.is_dir():
            return c
    have = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
    raise DatasetError(
        f"{parent}: no folder for ratio {ratio:g} (looked for {', '.join(c.name for c in candidates)}; found {have or 'nothing'}); "
        "pass a --ratio that is on disk or add the folder"
    )


def first_dir(*candidates: Path) -> Path:
    for c in candidates:
        if c.is_dir():
            return c
    raise DatasetError(f"no folder found among {', '.join(map(str, candidates))}; check the dataset layout")


def _spec(size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> ImageSpec:
    return ImageSpec(int(size), 3, mean, std)


def _build_pct(name: str, root: Path, ratio: float, spec: ImageSpec, n_cls: int, n_bias: int, **meta) -> BiasedDataset:
    """cmnist / cifar10c / bffhq: {pct}/{align,conflict}, valid in {pct}/valid or valid, test in test."""
    pct = pct_dir(root, ratio)
    val_dir = first_dir(pct / "valid", root / "valid")
    splits = {
        "train": labelled_split("train", [pct / "align", pct / "conflict"], spec),
        "val": labelled_split("val", [val_dir], spec),
        "test": labelled_split("test", [root / "test"], spec),
    }
    info = {"train_folders": [str(pct / "align"), str(pct / "conflict")], "val_folder": str(val_dir)}
    return BiasedDataset(name, splits, n_cls, n_bias, spec, info=info, **meta)


PCT_RATIOS = (0.5, 1.0, 2.0, 5.0)
PCT_LAYOUT = (
    "{root}/{0.5pct,1pct,2pct,5pct}/{align,conflict}/**/*_{y}_{b}.png, validation in {root}/{pct}/valid/ "
    "or {root}/valid/, test in {root}/test/ (the LfF / DFA / BiasEnsemble release)"
)
DFA_OBTAIN = (
    "the preprocessed archives released with DFA (github.com/kakaoenterprise/Learning-Debiased-Disentangled) "
    "or BiasEnsemble (github.com/kakaoenterprise/BiasEnsemble)"
)
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@register_dataset(
    "cmnist",
    description="Colored MNIST as released by LfF / DFA (labels in file names); bias = colour",
    layout=PCT_LAYOUT,
    obtain=DFA_OBTAIN,
    required=("*pct/align", "test"),
    ratios=PCT_RATIOS,
    default_ratio=1.0,
    options={"image_size": 28},
)
def cmnist(root: Path, ratio: float, image_size: int = 28) -> BiasedDataset:
    spec = _spec(image_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    return _build_pct("cmnist", root, ratio, spec, 10, 10, class_names=[str(d) for d in range(10)])


@register_dataset(
    "cifar10c",
    description="Corrupted CIFAR-10 (type 0) as released by LfF / DFA (labels in file names); bias = corruption",
    layout=PCT_LAYOUT,
    obtain=DFA_OBTAIN,
    required=("*pct/align", "test"),
    ratios=PCT_RATIOS,
    default_ratio=1.0,
    options={"image_size": 32},
)
def cifar10c(root: Path, ratio: float, image_size: int = 32) -> BiasedDataset:
    spec = _spec(image_size, CIFAR_MEAN, CIFAR_STD)
    return _build_pct("cifar10c", root, ratio, spec, 10, 10, class_names=CIFAR10_CLASSES)


@register_dataset(
    "bffhq",
    description="Biased FFHQ (DFA): target age (young / old), bias gender; the test split is bias-conflicting only",
    layout="{root}/0.5pct/{align,conflict}/*_{y}_{b}.png, {root}/valid/, {root}/test/ (test holds bias-conflicting samples only)",
    obtain="the bffhq archive released with DFA (github.com/kakaoenterprise/Learning-Debiased-Disentangled)",
    required=("0.5pct/align", "valid", "test"),
    ratios=(0.5,),
    default_ratio=0.5,
    options={"image_size": 224},
)
def bffhq(root: Path, ratio: float, image_size: int = 224) -> BiasedDataset:
    spec = _spec(image_size, IMAGENET_MEAN, IMAGENET_STD)
    ds = _build_pct("bffhq", root, ratio, spec, 2, 2, class_names=["young", "old"], bias_names=["female", "male"])
    ds.info["test_conflicting_only"] = True
    return ds


BAR_CLASSES = ["climbing", "diving", "fishing", "pole vaulting", "racing", "throwing"]


@register_dataset(
    "bar",
    description="Biased Action Recognition (BAR), BiasEnsemble release: 6 actions biased by place; bias labels from file names",
    layout="{root}/train/align/**/*_{y}_{b}.jpg, {root}/train/conflict/{1pct,5pct}/**/ (or conflict/1, conflict/5), "
    "{root}/valid/, {root}/test/",
    obtain="the BAR archive released with BiasEnsemble (github.com/kakaoenterprise/BiasEnsemble); "
    "the original BAR images are at github.com/alinlab/BAR",
    required=("train/align", "train/conflict", "valid", "test"),
    ratios=(1.0, 5.0),
    default_ratio=1.0,
    options={"image_size": 224},
)
def bar(root: Path, ratio: float, image_size: int = 224) -> BiasedDataset:
    spec = _spec(image_size, IMAGENET_MEAN, IMAGENET_STD)
    conflict = pct_dir(root / "train" / "conflict", ratio, bare=True)
    splits = {
        "train": labelled_split("train", [root / "train" / "align", conflict], spec, allow_unknown_bias=True),
        "val": labelled_split("val", [root / "valid"], spec, allow_unknown_bias=True),
        "test": labelled_split("test", [root / "test"], spec, allow_unknown_bias=True),
    }
    info = {"train_folders": [str(root / "train" / "align"), str(conflict)], "unknown_bias_marker": "_{y}_-1 in a file name"}
    return BiasedDataset("bar", splits, 6, 6, spec, class_names=BAR_CLASSES, info=info)
