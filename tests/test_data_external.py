"""Loaders of datasets users already have on disk, checked on tiny fixtures in each real layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from diffdebias.data import UNKNOWN_BIAS, load_dataset
from diffdebias.errors import ConfigError, DatasetError


def img(path: Path, color=(200, 40, 10), size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def check_item(ds, channels: int, size: int) -> None:
    x, y, b, i = ds.split("train")[0]
    assert x.dtype == torch.float32 and tuple(x.shape) == (channels, size, size)
    assert isinstance(y, int) and isinstance(b, int) and i == 0
    assert y == int(ds.split("train").y[0]) and b == int(ds.split("train").b[0])


# ------------------------------------------------------------------ LfF / DFA / BiasEnsemble folders
def make_cmnist(root: Path, pct: str = "1pct", val_at_root: bool = False, ext: str = "png") -> Path:
    n = 0
    for y in range(3):  # per-class subfolders, as in the DFA release
        for k in range(2):
            img(root / pct / "align" / str(y) / f"{n}_{y}_{y}.{ext}")
            n += 1
    img(root / pct / "conflict" / "0" / f"{n}_0_5.{ext}")  # conflicting: b != y
    img(root / pct / "conflict" / f"{n + 1}_9_2.{ext}")  # files may also sit directly in the folder
    val = root / "valid" if val_at_root else root / pct / "valid"
    img(val / f"0_1_1.{ext}")
    img(val / f"1_2_7.{ext}")
    for y in range(4):
        img(root / "test" / str(y) / f"{y}_{y}_{(y + 1) % 10}.{ext}")
    return root


def test_cmnist_layout_and_groups(tmp_path):
    root = make_cmnist(tmp_path / "cmnist")
    ds = load_dataset("cmnist", root=root)  # default ratio 1 -> 1pct
    assert (ds.num_classes, ds.num_bias, ds.spec.size) == (10, 10, 28)
    assert {k: len(s) for k, s in ds.splits.items()} == {"train": 8, "val": 2, "test": 4}
    table = ds.group_counts("train")
    assert table.shape == (10, 10) and table.values.sum() == 8
    assert table.loc[0, 0] == 2 and table.loc[0, 5] == 1 and table.loc[9, 2] == 1
    # conflicting = bias value not the class's training majority: class 9's only sample (b = 2) sets
    # its majority, so of the two files in conflict/ only 0_5 counts
    assert ds.conflicting_fraction("train") == pytest.approx(1 / 8)
    check_item(ds, 3, 28)
    x = ds.split("train")[0][0]  # cmnist: mean 0 / std 1, so pixels stay in [0, 1]
    assert torch.allclose(x[:, 0, 0], torch.tensor([200, 40, 10]) / 255.0, atol=1e-3)


def test_cmnist_valid_at_root_and_other_ratio(tmp_path):
    root = make_cmnist(tmp_path / "c", pct="0.5pct", val_at_root=True)
    ds = load_dataset("cmnist", root=root, ratio=0.5)
    assert len(ds.split("val")) == 2 and ds.info["val_folder"].endswith("valid")
    with pytest.raises(DatasetError, match="ratio 5.*5pct.*0.5pct"):
        load_dataset("cmnist", root=root, ratio=5)


def test_cifar10c_normalisation(tmp_path):
    root = make_cmnist(tmp_path / "cifar10c", pct="5pct")
    ds = load_dataset("cifar10c", root=root, ratio=5, image_size=16)
    x, *_ = ds.split("train")[0]
    assert tuple(x.shape) == (3, 16, 16)
    assert float(x[0, 0, 0]) == pytest.approx((200 / 255 - 0.4914) / 0.2023, abs=1e-2)
    assert ds.class_names[0] == "airplane"


def test_bffhq(tmp_path):
    root = tmp_path / "bffhq"
    for name in ("0_0_0.png", "1_1_1.png", "2_0_0.png"):
        img(root / "0.5pct" / "align" / name)
    img(root / "0.5pct" / "conflict" / "3_0_1.png")
    img(root / "valid" / "4_1_0.png")
    img(root / "valid" / "5_0_0.png")
    img(root / "test" / "6_0_1.png")  # test: bias-conflicting only
    img(root / "test" / "7_1_0.png")
    ds = load_dataset("bffhq", root=root, image_size=12)
    assert ds.info["ratio"] == 0.5 and ds.info["test_conflicting_only"]
    assert {k: len(s) for k, s in ds.splits.items()} == {"train": 4, "val": 2, "test": 2}
    assert ds.group_counts("train").values.tolist() == [[2, 1], [0, 1]]
    assert ds.conflicting_fraction("test") == 1.0
    check_item(ds, 3, 12)
    with pytest.raises(ConfigError, match="0.5"):
        load_dataset("bffhq", root=root, ratio=1)


def test_bar_both_conflict_spellings(tmp_path):
    root = tmp_path / "bar"
    img(root / "train" / "align" / "climbing" / "a_0_0.jpg")
    img(root / "train" / "align" / "diving" / "b_1_1.jpg")
    img(root / "train" / "conflict" / "1pct" / "fishing" / "c_2_0.jpg")
    img(root / "train" / "conflict" / "5" / "racing" / "d_4_1.jpg")
    img(root / "train" / "conflict" / "5" / "racing" / "e_4_2.jpg")
    img(root / "valid" / "f_5_-1.jpg")  # bias unknown for this one
    img(root / "test" / "g_3_1.jpg")
    ds1 = load_dataset("bar", root=root, image_size=8)
    assert len(ds1.split("train")) == 3 and ds1.num_classes == 6
    ds5 = load_dataset("bar", root=root, ratio=5, image_size=8)
    assert len(ds5.split("train")) == 4 and ds5.group_counts("train").loc[4, 1] == 1
    assert ds5.group_counts("val").loc[5, "unknown"] == 1
    check_item(ds5, 3, 8)


def test_folder_bad_file_name(tmp_path):
    root = make_cmnist(tmp_path / "c")
    bad = img(root / "1pct" / "align" / "0" / "image7.png")
    with pytest.raises(DatasetError) as err:
        load_dataset("cmnist", root=root)
    assert str(bad) in str(err.value) and "_{y}_{b}" in str(err.value)
    bad.unlink()
    stray = write(root / "test" / "notes.txt", "x")
    with pytest.raises(DatasetError, match="notes.txt.*not an image"):
        load_dataset("cmnist", root=root)
    stray.unlink()
    img(root / "1pct" / "align" / "0" / "8_0_-1.png")
    with pytest.raises(DatasetError, match="bias label -1"):
        load_dataset("cmnist", root=root)


def test_folder_label_out_of_range_and_empty_split(tmp_path):
    root = make_cmnist(tmp_path / "c")
    bad = img(root / "test" / "9_12_0.png")
    with pytest.raises(DatasetError, match="'y' has value 12"):
        load_dataset("cmnist", root=root)
    bad.unlink()
    for p in (root / "1pct" / "valid").iterdir():
        p.unlink()
    with pytest.raises(DatasetError, match="no images found for split 'val'"):
        load_dataset("cmnist", root=root)


def test_folder_corrupt_image_fails_on_access(tmp_path):
    root = make_cmnist(tmp_path / "c")
    bad = write(root / "1pct" / "align" / "0" / "000_0_0.png", "not a png")  # sorts first
    ds = load_dataset("cmnist", root=root)
    assert ds.split("train").paths[0] == bad
    with pytest.raises(DatasetError, match="000_0_0.png.*cannot read image"):
        ds.split("train")[0]


@pytest.mark.parametrize("name", ["cmnist", "cifar10c", "bffhq", "bar", "waterbirds", "celeba", "urbancars", "folder_csv", "imagenet9"])
def test_missing_root_names_layout(tmp_path, name):
    with pytest.raises(DatasetError, match="expected layout") as err:
        load_dataset(name, root=tmp_path / "nowhere")
    assert "how to obtain it" in str(err.value)


# ----------------------------------------------------------------------------------- Waterbirds
WB_HEADER = "img_id,img_filename,y,split,place,place_filename\n"


def make_waterbirds(root: Path) -> Path:
    rows = []
    specs = [(0, 0, 0), (0, 0, 0), (1, 0, 1), (1, 0, 0), (0, 1, 0), (1, 1, 1), (0, 2, 1), (1, 2, 0)]
    for i, (y, split, place) in enumerate(specs):
        fn = f"{'001.Albatross' if y else '002.Sparrow'}/bird_{i}.jpg"
        img(root / fn)
        rows.append(f"{i + 1},{fn},{y},{split},{place},/x/y.jpg")
    write(root / "metadata.csv", WB_HEADER + "\n".join(rows) + "\n")
    return root


def test_waterbirds(tmp_path):
    root = make_waterbirds(tmp_path / "waterbird_complete95_forest2water2")
    ds = load_dataset("waterbirds", root=root, image_size=10)
    assert {k: len(s) for k, s in ds.splits.items()} == {"train": 4, "val": 2, "test": 2}
    assert ds.group_counts("train").values.tolist() == [[2, 0], [1, 1]]
    assert ds.class_names == ["landbird", "waterbird"] and ds.bias_names == ["land", "water"]
    check_item(ds, 3, 10)


@pytest.mark.parametrize(
    "row, pattern",
    [
        ("9,../x.png,0,0,0,", "img_filename.*leaves the dataset root"),
        ("9,/etc/passwd,0,0,0,", "img_filename.*absolute path"),
        ("9,002.Sparrow/bird_0.jpg,1.5,0,0,", r"row 9 .*column 'y'.*not an integer"),
        ("9,002.Sparrow/bird_0.jpg,2,0,0,", r"row 9 .*column 'y'.*value 2 must be one of \[0, 1\]"),
        ("9,002.Sparrow/bird_0.jpg,1,3,0,", r"column 'split'.*value 3"),
        ("1,002.Sparrow/bird_0.jpg,1,0,0,", "duplicate ids"),
    ],
)
def test_waterbirds_bad_rows(tmp_path, row, pattern):
    root = make_waterbirds(tmp_path / "wb")
    with open(root / "metadata.csv", "a") as f:
        f.write(row + "\n")
    with pytest.raises(DatasetError, match=pattern) as err:
        load_dataset("waterbirds", root=root)
    assert "metadata.csv" in str(err.value)


def test_waterbirds_unreadable_metadata(tmp_path):
    root = tmp_path / "wb"
    (root / "metadata.csv").mkdir(parents=True)  # present (so "found") but not a file
    with pytest.raises(DatasetError, match="metadata.csv: metadata file not found"):
        load_dataset("waterbirds", root=root)
    write(tmp_path / "wb2" / "metadata.csv", 'img_id,img_filename\n1,"unterminated\n')
    with pytest.raises(DatasetError, match="metadata.csv: (cannot read as CSV|missing column)"):
        load_dataset("waterbirds", root=tmp_path / "wb2")


# --------------------------------------------------------------------------------------- CelebA
def make_celeba(root: Path, nested: bool) -> Path:
    img_dir = root / "img_align_celeba" / ("img_align_celeba" if nested else "")
    attrs = ["5_o_Clock_Shadow", "Blond_Hair", "Male", "Smiling"]
    # (partition, blond, male, smiling)
    table = [(0, 1, -1, 1), (0, 1, -1, -1), (0, -1, 1, 1), (0, -1, -1, 1), (0, 1, 1, -1), (1, 1, 1, 1), (1, -1, -1, -1), (2, -1, 1, 1)]
    part, attr = ["image_id,partition"], ["image_id," + ",".join(attrs)]
    for i, (p, blond, male, smile) in enumerate(table):
        name = f"{i + 1:06d}.jpg"
        img(img_dir / name, size=9)
        part.append(f"{name},{p}")
        attr.append(f"{name},-1,{blond},{male},{smile}")
    write(root / "list_eval_partition.csv", "\n".join(part) + "\n")
    write(root / "list_attr_celeba.csv", "\n".join(attr) + "\n")
    return root


@pytest.mark.parametrize("nested", [False, True])
def test_celeba(tmp_path, nested):
    root = make_celeba(tmp_path / "celeba", nested)
    ds = load_dataset("celeba", root=root, image_size=8)
    assert ds.info["image_dir"].endswith("img_align_celeba/img_align_celeba" if nested else "img_align_celeba")
    assert {k: len(s) for k, s in ds.splits.items()} == {"train": 5, "val": 2, "test": 1}
    # rows y = Blond_Hair, columns b = Male
    assert ds.group_counts("train").values.tolist() == [[1, 1], [2, 1]]
    check_item(ds, 3, 8)
    ds2 = load_dataset("celeba", root=root, target_attr="Smiling", image_size=8)
    assert ds2.class_names == ["not Smiling", "Smiling"] and int(ds2.split("train").y.sum()) == 3


def test_celeba_errors(tmp_path):
    root = make_celeba(tmp_path / "celeba", nested=False)
    with pytest.raises(ConfigError, match="'Blond'.*valid names.*Blond_Hair, Male"):
        load_dataset("celeba", root=root, target_attr="Blond")
    with pytest.raises(ConfigError, match="both"):
        load_dataset("celeba", root=root, bias_attr="Blond_Hair")
    write(root / "list_eval_partition.csv", "image_id,partition\n../../etc/passwd,0\n")
    with pytest.raises(DatasetError, match="list_attr_celeba.csv: no attributes"):
        load_dataset("celeba", root=root)
    with open(root / "list_attr_celeba.csv", "a") as f:
        f.write("../../etc/passwd,1,1,1,1\n")
    with pytest.raises(DatasetError, match="list_eval_partition.csv: field 'image_id'.*leaves"):
        load_dataset("celeba", root=root)


# ------------------------------------------------------------------------------------ UrbanCars
URBAN = ("urban", "country")


def make_urbancars(root: Path) -> Path:
    for split, r in (("train", 0.95), ("val", 0.5), ("test", 0.5)):
        for obj in range(2):
            for bg in range(2):
                for co in range(2):
                    folder = root / f"bg-{r}_co_occur_obj-{r}" / split / f"obj-{URBAN[obj]}_bg-{URBAN[bg]}_co_occur_obj-{URBAN[co]}"
                    n = 2 if (split == "train" and bg == obj and co == obj) else 1
                    for k in range(n):
                        img(folder / f"{k}.jpg")
    return root


def test_urbancars(tmp_path):
    root = make_urbancars(tmp_path / "urbancars_images")
    ds = load_dataset("urbancars", root=root, image_size=8)
    assert (ds.num_classes, ds.num_bias) == (2, 4)
    assert {k: len(s) for k, s in ds.splits.items()} == {"train": 10, "val": 8, "test": 8}
    # b = 2 * bg + co_occur_obj; fully aligned cells are (y=0, b=0) and (y=1, b=3)
    assert ds.group_counts("train").values.tolist() == [[2, 1, 1, 1], [1, 1, 1, 2]]
    f = ds.info["bias_factors"]
    b = ds.split("train").b
    bg = (b // f["bg"]["divisor"]) % f["bg"]["modulus"]
    co = (b // f["co_occur_obj"]["divisor"]) % f["co_occur_obj"]["modulus"]
    assert torch.equal(b, 2 * bg + co)
    assert ds.bias_names[2] == "bg-country_co_occur_obj-urban"
    check_item(ds, 3, 8)


def test_urbancars_missing_group_folder(tmp_path):
    root = make_urbancars(tmp_path / "u")
    folder = root / "bg-0.5_co_occur_obj-0.5" / "val" / "obj-urban_bg-country_co_occur_obj-urban"
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()
    with pytest.raises(DatasetError, match="obj-urban_bg-country_co_occur_obj-urban: folder not found"):
        load_dataset("urbancars", root=root)


# ----------------------------------------------------------------------------------- folder_csv
CSV_HEADER = "id,filename,split,y,a\n"


def make_folder_csv(root: Path, extra_rows: str = "") -> Path:
    rows = [
        ("a1", "imgs/a1.png", 0, 0, 0),
        ("a2", "imgs/a2.png", 0, 2, 1),
        ("a3", "imgs/a3.png", 0, 1, ""),
        ("v1", "imgs/v1.png", 1, 0, -1),
        ("t1", "imgs/t1.png", 2, 1, 1),
    ]
    for _, fn, *_ in rows:
        img(root / fn)
    write(root / "metadata.csv", CSV_HEADER + "".join(f"{i},{fn},{s},{y},{a}\n" for i, fn, s, y, a in rows) + extra_rows)
    return root


def test_folder_csv(tmp_path):
    root = make_folder_csv(tmp_path / "mine")
    ds = load_dataset("folder_csv", root=root, image_size=8, channels=1)
    assert (ds.num_classes, ds.num_bias) == (3, 2)
    assert {k: len(s) for k, s in ds.splits.items()} == {"train": 3, "val": 1, "test": 1}
    table = ds.group_counts("train")
    assert list(table.columns) == [0, 1, "unknown"] and table.loc[1, "unknown"] == 1 and table.loc[2, 1] == 1
    assert int(ds.split("val").b[0]) == UNKNOWN_BIAS
    check_item(ds, 1, 8)


def test_folder_csv_all_bias_unknown(tmp_path):
    root = tmp_path / "m"
    for n in ("a", "b", "c"):
        img(root / f"{n}.png")
    write(root / "metadata.csv", CSV_HEADER + "a,a.png,0,0,\nb,b.png,1,1,-1\nc,c.png,2,0,\n")
    ds = load_dataset("folder_csv", root=root, image_size=8)
    assert ds.num_bias == 0 and not ds.split("train").has_bias_labels


@pytest.mark.parametrize(
    "extra, pattern",
    [
        ("x,../x.png,0,0,0\n", "field 'filename' path '../x.png' leaves the dataset root"),
        ("x,/tmp/x.png,0,0,0\n", "field 'filename' holds an absolute path"),
        ("x,imgs/a1.png,0,one,0\n", r"row 6 \(id='x'\), column 'y': 'one' is not an integer"),
        ("x,imgs/a1.png,0,1,0.5\n", r"row 6 .*column 'a'"),
        ("x,imgs/a1.png,3,1,0\n", r"column 'split': value 3 must be one of \[0, 1, 2\]"),
        ("x,imgs/a1.png,0,-1,0\n", r"column 'y': value -1 must be >= 0"),
        ("a1,imgs/a1.png,0,1,0\n", "duplicate ids \\('a1'\\)"),
    ],
)
def test_folder_csv_bad_rows(tmp_path, extra, pattern):
    root = make_folder_csv(tmp_path / "mine", extra)
    with pytest.raises(DatasetError, match=pattern) as err:
        load_dataset("folder_csv", root=root)
    assert "metadata.csv" in str(err.value)


def test_folder_csv_missing_columns_and_empty_split(tmp_path):
    root = tmp_path / "m"
    write(root / "metadata.csv", "id,filename,y\nx,x.png,0\n")
    with pytest.raises(DatasetError, match=r"metadata.csv: missing column\(s\) split, a; the header must contain id,filename,split,y,a"):
        load_dataset("folder_csv", root=root)
    img(root / "x.png")
    write(root / "metadata.csv", CSV_HEADER + "x,x.png,0,0,0\ny,x.png,2,1,1\n")
    with pytest.raises(DatasetError, match=r"metadata.csv: no rows with split 1 \(val\)"):
        load_dataset("folder_csv", root=root)


def test_folder_csv_corrupt_image(tmp_path):
    root = make_folder_csv(tmp_path / "mine")
    write(root / "imgs" / "a1.png", "garbage")
    ds = load_dataset("folder_csv", root=root, image_size=8)
    with pytest.raises(DatasetError, match="a1.png.*cannot read image"):
        ds.split("train")[0]


# ------------------------------------------------------------------------------------ ImageNet-9
def make_imagenet(root: Path, with_val: bool = True) -> Path:
    wnids = [f"n{i:08d}" for i in range(1000)]
    for w in wnids:
        (root / "train" / w).mkdir(parents=True)
    for k in range(10):
        img(root / "train" / wnids[151] / f"{wnids[151]}_{k}.JPEG")  # dog
    for k in range(6):
        img(root / "train" / wnids[285] / f"{wnids[285]}_{k}.JPEG")  # cat (last index of its range)
    img(root / "train" / wnids[0] / "x.JPEG")  # tench: outside the nine ranges, dropped
    if with_val:
        img(root / "val" / wnids[30] / "v0.JPEG")  # frog
        img(root / "val" / wnids[319] / "v1.JPEG")  # insect
        img(root / "val" / wnids[999] / "v2.JPEG")  # dropped
    img(root / "imagenet-a" / wnids[100] / "a0.jpg")  # bird
    img(root / "imagenet-a" / wnids[1] / "a1.jpg")  # dropped
    write(root / "imagenet-a" / "README.txt", "ImageNet-A")
    return root


def test_imagenet9(tmp_path):
    root = make_imagenet(tmp_path / "imagenet")
    ds = load_dataset("imagenet9", root=root, image_size=8)
    assert (ds.num_classes, ds.num_bias) == (9, 0)
    assert {k: len(s) for k, s in ds.splits.items()} == {"train": 14, "val": 2, "test": 2, "imagenet_a": 1}
    assert ds.group_counts("train")["unknown"].tolist() == [9, 5, 0, 0, 0, 0, 0, 0, 0]
    assert ds.split("test").y.tolist() == [2, 8] and ds.split("imagenet_a").y.tolist() == [4]
    assert (ds.split("train").b == UNKNOWN_BIAS).all()
    check_item(ds, 3, 8)
    again = load_dataset("imagenet9", root=root, image_size=8)
    assert again.split("val").paths == ds.split("val").paths  # deterministic hold-out
    small = load_dataset("imagenet9", root=root, image_size=8, max_per_class=6)
    assert len(small.split("train")) + len(small.split("val")) == 12 and len(small.split("test")) == 2
    with pytest.raises(DatasetError, match="max_per_class=3"):
        load_dataset("imagenet9", root=root, max_per_class=3)


def test_imagenet9_layout_errors(tmp_path):
    root = make_imagenet(tmp_path / "imagenet", with_val=False)
    with pytest.warns(UserWarning, match="held out from train"):
        ds = load_dataset("imagenet9", root=root, image_size=8)
    assert len(ds.split("test")) == 2 and not set(ds.split("test").paths) & set(ds.split("train").paths)
    (root / "train" / "n00000999").rmdir()
    with pytest.raises(DatasetError, match="found 999 class folders, expected the 1000"):
        load_dataset("imagenet9", root=root)
