"""Datasets described by metadata files: Waterbirds, CelebA, UrbanCars and any ``metadata.csv``.

Metadata files are read as text (``pandas.read_csv`` with ``dtype=str``; nothing is unpickled),
every integer field is checked and every path is confined to the dataset root with
:func:`diffdebias.paths.resolve_inside`. Errors name the file, the row and the column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from ..errors import ConfigError, DatasetError
from ..paths import resolve_inside
from .base import SPLITS, BiasedDataset, FileSplit, ImageSpec
from .folders import IMAGENET_MEAN, IMAGENET_STD, list_images
from .registry import register_dataset

_INT_RE = r"\s*[+-]?[0-9]{1,18}\s*"  # ASCII digits only (\d also matches other scripts' digits)


def read_table(path: Path, required: Sequence[str]) -> pd.DataFrame:
    """A CSV file as strings; a missing / unparsable file or missing columns raise a DatasetError."""
    if not path.is_file():
        raise DatasetError(f"{path}: metadata file not found; it must hold the columns {','.join(required)}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DatasetError(f"{path}: cannot read as CSV ({exc}); the file needs a header line with {','.join(required)}") from None
    df.columns = [str(c).strip() for c in df.columns]
    dup = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dup:
        raise DatasetError(f"{path}: column(s) {', '.join(dup)} appear more than once in the header; keep one of each")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {', '.join(missing)}; the header must contain {','.join(required)} (found {','.join(df.columns)})"
        )
    return df


def _row(df: pd.DataFrame, i: int) -> str:
    return f"row {i + 1} ({df.columns[0]}={df.iloc[i, 0]!r})"


def int_column(
    df: pd.DataFrame, col: str, source: Path, *, allowed: Iterable[int] | None = None, minimum: int | None = None, empty: int | None = None
) -> np.ndarray:
    """Column `col` as int64, refusing non-integers and values outside `allowed` / below `minimum`.

    `empty` is the value of an empty cell (default: an empty cell is an error).
    """
    vals = df[col].astype(str)
    blank = vals.str.strip() == ""
    if empty is not None:
        vals = vals.where(~blank, str(empty))
    bad = np.flatnonzero(~vals.str.fullmatch(_INT_RE).to_numpy())
    if len(bad):
        i = int(bad[0])
        raise DatasetError(f"{source}: {_row(df, i)}, column '{col}': {df[col].iloc[i]!r} is not an integer; fix the value")
    out = vals.str.strip().astype(np.int64).to_numpy()
    ok = np.ones(len(out), dtype=bool)
    if allowed is not None:
        allowed = sorted(set(allowed))
        ok &= np.isin(out, allowed)
    if minimum is not None:
        ok &= out >= minimum
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        want = f"one of {allowed}" if allowed is not None else f">= {minimum}"
        raise DatasetError(f"{source}: {_row(df, i)}, column '{col}': value {out[i]} must be {want}; fix the value")
    return out


def confined_paths(root: Path, values: Iterable[str], *, source: Path, field: str) -> list[Path]:
    """Paths from a metadata column, each joined to `root` and refused if it leaves it."""
    return [resolve_inside(root, v, source=str(source), field=field) for v in values]


def unique_ids(df: pd.DataFrame, col: str, source: Path) -> None:
    ids = df[col].astype(str).str.strip()
    empty = np.flatnonzero((ids == "").to_numpy())
    if len(empty):
        raise DatasetError(f"{source}: {_row(df, int(empty[0]))}, column '{col}': empty id; give every row an id")
    dup = ids[ids.duplicated()]
    if len(dup):
        raise DatasetError(f"{source}: column '{col}' has duplicate ids ({', '.join(map(repr, dup.unique()[:5]))}); ids must be unique")


def table_splits(paths: list[Path], y: np.ndarray, b: np.ndarray, split: np.ndarray, spec: ImageSpec, source: Path) -> dict[str, FileSplit]:
    """train / val / test FileSplits from split codes 0 / 1 / 2; an empty split names `source`."""
    out = {}
    for code, name in enumerate(SPLITS):
        idx = np.flatnonzero(split == code)
        if len(idx) == 0:
            raise DatasetError(f"{source}: no rows with split {code} ({name}); every split 0/1/2 needs at least one row")
        out[name] = FileSplit(name, [paths[i] for i in idx], y[idx], b[idx], spec)
    return out


def _imagenet_spec(size: int) -> ImageSpec:
    return ImageSpec(int(size), 3, IMAGENET_MEAN, IMAGENET_STD)


# --------------------------------------------------------------------------------- Waterbirds
WATERBIRDS_COLUMNS = ("img_id", "img_filename", "y", "split", "place")


@register_dataset(
    "waterbirds",
    description="Waterbirds (Group DRO): bird type (land / water) biased by background place",
    layout="{root} = waterbird_complete95_forest2water2/ holding metadata.csv (img_id,img_filename,y,split,place) and the image folders it names",
    obtain="the waterbird_complete95_forest2water2 tarball linked from the Group DRO repository (github.com/kohpangwei/group_DRO)",
    required=("metadata.csv",),
    default_root="waterbird_complete95_forest2water2",
    options={"image_size": 224},
)
def waterbirds(root: Path, ratio: None, image_size: int = 224) -> BiasedDataset:
    source = root / "metadata.csv"
    df = read_table(source, WATERBIRDS_COLUMNS)
    unique_ids(df, "img_id", source)
    y = int_column(df, "y", source, allowed=(0, 1))
    b = int_column(df, "place", source, allowed=(0, 1))
    split = int_column(df, "split", source, allowed=(0, 1, 2))
    paths = confined_paths(root, df["img_filename"], source=source, field="img_filename")
    spec = _imagenet_spec(image_size)
    splits = table_splits(paths, y, b, split, spec, source)
    return BiasedDataset(
        "waterbirds", splits, 2, 2, spec, class_names=["landbird", "waterbird"], bias_names=["land", "water"], info={"bias": "place"}
    )


# ------------------------------------------------------------------------------------- CelebA
@register_dataset(
    "celeba",
    description="CelebA: a binary attribute (default Blond_Hair) biased by another (default Male)",
    layout="{root}/img_align_celeba/*.jpg (or img_align_celeba/img_align_celeba/), {root}/list_eval_partition.csv (image_id,partition), "
    "{root}/list_attr_celeba.csv (image_id + 40 attributes in -1/1)",
    obtain="CelebA from its official site (mmlab.ie.cuhk.edu.hk/projects/CelebA.html) or the Kaggle 'celeba-dataset' archive, which has these csv files",
    required=("img_align_celeba", "list_eval_partition.csv", "list_attr_celeba.csv"),
    default_root="celeba",
    options={"target_attr": "Blond_Hair", "bias_attr": "Male", "image_size": 128},
)
def celeba(root: Path, ratio: None, target_attr: str = "Blond_Hair", bias_attr: str = "Male", image_size: int = 128) -> BiasedDataset:
    part_src, attr_src = root / "list_eval_partition.csv", root / "list_attr_celeba.csv"
    part = read_table(part_src, ("image_id", "partition"))
    attrs = read_table(attr_src, ("image_id",))
    names = [c for c in attrs.columns if c != "image_id"]
    for opt, value in (("target_attr", target_attr), ("bias_attr", bias_attr)):
        if value not in names:
            raise ConfigError(f"dataset 'celeba' option '{opt}': unknown attribute {value!r}; valid names (from {attr_src}): {', '.join(names)}")
    if target_attr == bias_attr:
        raise ConfigError(f"dataset 'celeba': target_attr and bias_attr are both {target_attr!r}; choose two different attributes")
    unique_ids(part, "image_id", part_src)
    unique_ids(attrs, "image_id", attr_src)
    part = part.assign(image_id=part["image_id"].str.strip())
    attrs = attrs.assign(image_id=attrs["image_id"].str.strip()).set_index("image_id", drop=False)
    missing = part.loc[~part["image_id"].isin(attrs.index), "image_id"]
    if len(missing):
        raise DatasetError(f"{attr_src}: no attributes for image_id {missing.iloc[0]!r} listed in {part_src}; the two files must list the same images")
    attrs = attrs.loc[part["image_id"]].reset_index(drop=True)
    split = int_column(part, "partition", part_src, allowed=(0, 1, 2))
    y = (int_column(attrs, target_attr, attr_src, allowed=(-1, 0, 1)) == 1).astype(np.int64)
    b = (int_column(attrs, bias_attr, attr_src, allowed=(-1, 0, 1)) == 1).astype(np.int64)
    outer = root / "img_align_celeba"
    img_dir = outer / "img_align_celeba" if (outer / "img_align_celeba").is_dir() else outer
    paths = confined_paths(img_dir, part["image_id"], source=part_src, field="image_id")
    spec = _imagenet_spec(image_size)
    splits = table_splits(paths, y, b, split, spec, part_src)
    return BiasedDataset(
        "celeba",
        splits,
        2,
        2,
        spec,
        class_names=[f"not {target_attr}", target_attr],
        bias_names=[f"not {bias_attr}", bias_attr],
        info={"target_attr": target_attr, "bias_attr": bias_attr, "image_dir": str(img_dir)},
    )


# ---------------------------------------------------------------------------------- UrbanCars
URBANCARS_VALUES = ("urban", "country")
URBANCARS_RATIOS = {"train": 0.95, "val": 0.5, "test": 0.5}
# b = 2 * bg + co_occur_obj, each factor's raw value 0 = urban, 1 = country; factor = (b // divisor) % 2.
URBANCARS_FACTORS = {
    "bg": {"divisor": 2, "modulus": 2, "names": list(URBANCARS_VALUES), "aligned_when": "factor == y"},
    "co_occur_obj": {"divisor": 1, "modulus": 2, "names": list(URBANCARS_VALUES), "aligned_when": "factor == y"},
}


def _urbancars_dir(ratio: float, split: str) -> str:
    return f"bg-{ratio:g}_co_occur_obj-{ratio:g}/{split}"


@register_dataset(
    "urbancars",
    description="UrbanCars (Whac-A-Mole): car type (urban / country) with two shortcuts, background and co-occurring object",
    layout="{root}/bg-0.95_co_occur_obj-0.95/train/, {root}/bg-0.5_co_occur_obj-0.5/{val,test}/, each with the 8 folders "
    "obj-{urban,country}_bg-{urban,country}_co_occur_obj-{urban,country}/*.jpg ({root} is Whac-A-Mole's urbancars_images/)",
    obtain="generate it with the UrbanCars script of Whac-A-Mole (github.com/facebookresearch/Whac-A-Mole), which writes data/urbancars_images/",
    required=tuple(_urbancars_dir(r, s) for s, r in URBANCARS_RATIOS.items()),
    default_root="urbancars_images",
    options={"image_size": 224},
)
def urbancars(root: Path, ratio: None, image_size: int = 224) -> BiasedDataset:
    spec = _imagenet_spec(image_size)
    splits = {}
    for split, r in URBANCARS_RATIOS.items():
        split_dir = root / _urbancars_dir(r, split)
        paths, y, b = [], [], []
        expected = set()
        for obj in range(2):
            for bg in range(2):
                for co in range(2):
                    name = f"obj-{URBANCARS_VALUES[obj]}_bg-{URBANCARS_VALUES[bg]}_co_occur_obj-{URBANCARS_VALUES[co]}"
                    expected.add(name)
                    found = list_images(split_dir / name)
                    paths += found
                    y += [obj] * len(found)
                    b += [2 * bg + co] * len(found)
        extra = sorted(p.name for p in split_dir.iterdir() if p.name not in expected and not p.name.startswith("."))
        if extra:
            raise DatasetError(f"{split_dir}: unexpected entries {', '.join(extra[:5])}; only the 8 obj-*_bg-*_co_occur_obj-* folders belong here")
        if not paths:
            raise DatasetError(f"{split_dir}: no images in split '{split}'; check that the generation script finished")
        splits[split] = FileSplit(split, paths, y, b, spec)
    names = [f"bg-{URBANCARS_VALUES[k // 2]}_co_occur_obj-{URBANCARS_VALUES[k % 2]}" for k in range(4)]
    info = {"bias_factors": URBANCARS_FACTORS, "bias_encoding": "b = 2 * bg + co_occur_obj (0 urban, 1 country)"}
    return BiasedDataset("urbancars", splits, 2, 4, spec, class_names=["urban car", "country car"], bias_names=names, info=info)


# --------------------------------------------------------------------------------- folder_csv
FOLDER_CSV_COLUMNS = ("id", "filename", "split", "y", "a")
FOLDER_CSV_MAX_AUTO_SIZE = 64


def own_size(path: Path) -> int:
    """The shorter side of an image file, read from its header."""
    try:
        with Image.open(path) as im:
            return min(im.size)
    except FileNotFoundError:
        raise DatasetError(f"{path}: image file is missing; restore it or remove its row from the dataset") from None
    except Exception as exc:  # noqa: BLE001 - decoders raise many types on bad files
        raise DatasetError(f"{path}: cannot read image ({type(exc).__name__}: {exc}); replace the file or remove its row") from None


@register_dataset(
    "folder_csv",
    description="Any image dataset listed in one metadata.csv (SubpopBench style): id,filename,split,y,a",
    layout="{root}/metadata.csv with columns id,filename,split,y,a: filename relative to {root}, split 0 train / 1 val / 2 test, "
    "y the class (0..K-1), a the bias attribute (0..A-1; -1 or empty when unknown)",
    obtain="write metadata.csv for your own images (one row per image)",
    required=("metadata.csv",),
    options={"image_size": 0, "channels": 3},
)
def folder_csv(root: Path, ratio: None, image_size: int = 0, channels: int = 3) -> BiasedDataset:
    """image_size 0: the first image's own size (its shorter side) up to FOLDER_CSV_MAX_AUTO_SIZE, so
    that small images keep their size; larger ones are read at that size."""
    source = root / "metadata.csv"
    df = read_table(source, FOLDER_CSV_COLUMNS)
    if len(df) == 0:
        raise DatasetError(f"{source}: no rows; add one row per image")
    unique_ids(df, "id", source)
    split = int_column(df, "split", source, allowed=(0, 1, 2))
    y = int_column(df, "y", source, minimum=0)
    a = int_column(df, "a", source, minimum=-1, empty=-1)
    paths = confined_paths(root, df["filename"], source=source, field="filename")
    channels = int(channels)
    if channels not in (1, 3):
        raise ConfigError(f"dataset 'folder_csv' option 'channels': must be 1 or 3, got {channels}")
    size = int(image_size) or min(own_size(paths[0]), FOLDER_CSV_MAX_AUTO_SIZE)
    spec = ImageSpec(size, channels, (0.5,) * channels, (0.5,) * channels)
    splits = table_splits(paths, y, a, split, spec, source)
    num_bias = int(a.max()) + 1 if (a >= 0).any() else 0
    return BiasedDataset("folder_csv", splits, int(y.max()) + 1, num_bias, spec, info={"metadata": str(source)})
