import gzip

import numpy as np
import pytest
import torch

from diffdebias.data import load_dataset
from diffdebias.data.base import UNKNOWN_BIAS, TensorSplit, ImageSpec, group_table
from diffdebias.errors import ConfigError, DatasetError

from .conftest import require_fmnist


def test_real_colored_fmnist_splits_and_ratio(cfmnist):
    assert [len(cfmnist.split(s)) for s in ("train", "val", "test")] == [54000, 6000, 10000]
    assert cfmnist.num_classes == 10 and cfmnist.num_bias == 10
    x, y, b, i = cfmnist.split("train")[5]
    assert x.shape == (3, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert i == 5 and 0 <= y < 10 and 0 <= b < 10
    # the requested 1% conflicting ratio, within 0.05 points, on train and held-out val
    assert abs(cfmnist.conflicting_fraction("train") - 0.01) < 5e-4
    assert abs(cfmnist.conflicting_fraction("val") - 0.01) < 5e-4
    table = cfmnist.group_counts("test").to_numpy()
    assert table.sum() == 10000 and table.min() == table.max() == 100  # test is bias-uniform


@pytest.mark.parametrize("ratio", [0.5, 2.0, 5.0])
def test_group_counts_match_each_ratio(ratio):
    ds = load_dataset("colored_fmnist", root=require_fmnist(), ratio=ratio, cache=False)
    counts = ds.group_counts("train").to_numpy()
    per_class_conflicting = (counts.sum(1) - np.diag(counts)) / counts.sum(1)
    assert np.allclose(per_class_conflicting, ratio / 100, atol=2e-4)


def test_colour_is_the_bias(cfmnist):
    train = cfmnist.split("train")
    imgs = train.images[:2000].float()
    mean_rgb = imgs.sum(dim=(2, 3)) / (imgs.amax(1).gt(0).sum(dim=(1, 2))[:, None] + 1)
    red_like = train.b[:2000] == 0
    r, g, bl = mean_rgb[red_like].T
    assert ((r > 5 * g + 1) & (r > 5 * bl + 1)).all()


def test_deterministic_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFDEBIAS_CACHE", str(tmp_path))
    a = load_dataset("colored_fmnist", root=require_fmnist(), ratio=1.0)
    files = list(tmp_path.rglob("*.npz"))
    assert len(files) == 1
    b = load_dataset("colored_fmnist", root=require_fmnist(), ratio=1.0)
    assert torch.equal(a.split("train").images, b.split("train").images)
    assert torch.equal(a.split("val").b, b.split("val").b)
    files[0].write_bytes(b"garbage")  # a cache entry that fails to verify is rebuilt
    c = load_dataset("colored_fmnist", root=require_fmnist(), ratio=1.0)
    assert torch.equal(a.split("train").b, c.split("train").b)
    other = load_dataset("colored_fmnist", root=require_fmnist(), ratio=1.0, seed=1)
    assert not torch.equal(a.split("train").b, other.split("train").b)


def test_uniform_val_option():
    ds = load_dataset("colored_fmnist", root=require_fmnist(), ratio=1.0, val_mode="uniform", cache=False)
    assert 0.89 < ds.conflicting_fraction("val") < 0.91


def _write_idx(path, arr: np.ndarray, code: int = 0x08):
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


def _mnist_fixture(root, n=40):
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        _write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)


def test_colored_mnist_on_fixture(tmp_path):
    _mnist_fixture(tmp_path)
    ds = load_dataset("colored_mnist", root=tmp_path, ratio=5.0, cache=False)
    assert len(ds.split("train")) + len(ds.split("val")) == 40
    assert ds.class_names == [str(d) for d in range(10)]


def test_bad_inputs(tmp_path):
    with pytest.raises(DatasetError, match="expected layout"):
        load_dataset("colored_mnist", root=tmp_path / "nowhere")
    _mnist_fixture(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05ab"))
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte.gz.*truncated"):
        load_dataset("colored_mnist", root=tmp_path, cache=False)
    with pytest.raises(ConfigError, match="valid options"):
        load_dataset("colored_fmnist", root=require_fmnist(), bogus=1)
    with pytest.raises(ConfigError, match="percentage"):
        load_dataset("colored_fmnist", root=require_fmnist(), ratio=150)


def test_labels_out_of_range_and_empty_split_refused():
    from diffdebias.data.base import BiasedDataset, check_labels

    spec = ImageSpec(4, 1, (0.0,), (1.0,))
    ok = TensorSplit("train", torch.zeros(3, 1, 4, 4, dtype=torch.uint8), [0, 1, 1], [0, 1, UNKNOWN_BIAS], spec)
    bad_y = TensorSplit("val", torch.zeros(2, 1, 4, 4, dtype=torch.uint8), [0, 7], [0, 0], spec)
    with pytest.raises(DatasetError, match="field 'y' has value 7"):
        check_labels(bad_y, 2, 2, source="fixture/val")
    empty = TensorSplit("test", torch.zeros(0, 1, 4, 4, dtype=torch.uint8), [], [], spec)
    with pytest.raises(DatasetError, match="empty"):
        BiasedDataset("fixture", {"train": ok, "val": ok, "test": empty}, 2, 2, spec)
    table = group_table(ok, 2, 2)
    assert table.loc[1, "unknown"] == 1 and table.loc[0, 0] == 1


def test_non_square_images_are_centre_cropped_not_stretched(tmp_path):
    from PIL import Image

    from diffdebias.data.base import load_image

    arr = np.zeros((20, 60, 3), dtype=np.uint8)  # 60 wide, 20 high: red centre third, black sides
    arr[:, 20:40, 0] = 255
    Image.fromarray(arr).save(tmp_path / "wide.png")
    out = load_image(tmp_path / "wide.png", 10, 3)
    assert out.shape == (3, 10, 10)
    assert out[0].float().mean() > 240 and out[1:].max() < 15  # only the red centre is kept
