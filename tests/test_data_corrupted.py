"""CIFAR-10-C style corruptions and the corrupted_fmnist / corrupted_cifar10 datasets."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import zoom as scipy_zoom

from diffdebias.data.corrupted import CIFAR_RECORD, CIFAR_TEST_FILE, CIFAR_TRAIN_FILES, read_cifar_bin
from diffdebias.data.corruptions import CORRUPTION_ORDER, CORRUPTIONS, brightness, contrast, corrupt_by_label, motion_blur, pixelate, zoom_blur
from diffdebias.data.idx import load_mnist_like
from diffdebias.data.registry import load_dataset
from diffdebias.errors import ConfigError, DatasetError

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def random_images(channels: int, n: int = 6, size: int = 28, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, channels), dtype=np.uint8)


def mean_abs_change(name: str, images: np.ndarray, severity: int) -> float:
    out = CORRUPTIONS[name](images, severity, np.random.default_rng(0))
    return float(np.abs(out.astype(np.int64) - images).mean())


def test_registry_lists_ten_corruptions_in_label_order():
    assert len(CORRUPTION_ORDER) == 10 == len(set(CORRUPTION_ORDER))
    assert set(CORRUPTION_ORDER) == set(CORRUPTIONS)


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
@pytest.mark.parametrize("name", CORRUPTION_ORDER)
def test_corruption_shape_dtype_change_and_determinism(name, channels, size):
    images = random_images(channels, size=size)
    out = CORRUPTIONS[name](images, 4, np.random.default_rng(7))
    assert out.shape == images.shape and out.dtype == np.uint8
    assert np.abs(out.astype(np.int64) - images).mean() > 1.0
    np.testing.assert_array_equal(out, CORRUPTIONS[name](images, 4, np.random.default_rng(7)))


@pytest.mark.parametrize("name", CORRUPTION_ORDER)
def test_higher_severity_changes_the_image_more(name):
    images = random_images(3, n=8, size=32)
    changes = [mean_abs_change(name, images, s) for s in range(1, 6)]
    if name == "motion_blur":  # severities 3 and 4 differ only beyond the Gaussian's reach (as in the reference)
        del changes[3]
    assert all(a < b for a, b in zip(changes, changes[1:])), changes


def test_motion_blur_streaks_a_point_along_a_line():
    images = np.zeros((5, 28, 28, 1), dtype=np.uint8)
    images[:, 14, 14] = 255
    out = motion_blur(images, 4, np.random.default_rng(0))[..., 0]
    for img in out:
        rows, cols = np.nonzero(img)
        assert len(cols) >= 5 and cols.max() == 14  # one-sided, angle within 45 degrees of the x axis
        assert np.all(np.abs(rows - 14) <= 14 - cols)


def test_bad_severity_and_bad_images_are_refused():
    images = random_images(1)
    for severity in (0, 6, 2.5):
        with pytest.raises(ConfigError, match="severity"):
            CORRUPTIONS["contrast"](images, severity, np.random.default_rng(0))
    with pytest.raises(ValueError, match="uint8"):
        CORRUPTIONS["contrast"](images.astype(np.float32), 1, np.random.default_rng(0))


@pytest.mark.parametrize("channels", [1, 3])
def test_pixelate_matches_pil_box_resampling(channels):
    images = random_images(channels, n=4, size=32)
    for severity, c in enumerate((0.95, 0.9, 0.85, 0.75, 0.65), start=1):
        small = (int(32 * c), int(32 * c))
        ref = np.stack(
            [np.asarray(Image.fromarray(im.squeeze(-1) if channels == 1 else im).resize(small, Image.BOX).resize((32, 32), Image.BOX)) for im in images]
        ).reshape(images.shape)
        assert np.abs(ref.astype(np.int64) - pixelate(images, severity, np.random.default_rng(0))).max() <= 1


def test_brightness_matches_hsv_reference():
    images = random_images(3, n=2, size=8)
    ref = np.empty(images.shape)
    for idx in np.ndindex(images.shape[:3]):
        h, s, v = colorsys.rgb_to_hsv(*(images[idx] / 255.0))
        ref[idx] = colorsys.hsv_to_rgb(h, s, min(v + 0.2, 1.0))
    assert np.abs(np.rint(ref * 255) - brightness(images, 4, np.random.default_rng(0))).max() <= 1


def test_zoom_blur_matches_scipy_reference():
    images = random_images(3, n=2, size=32)

    def clipped_zoom(img, factor):
        crop = int(np.ceil(32 / factor))
        top = (32 - crop) // 2
        zoomed = scipy_zoom(img[top : top + crop, top : top + crop], (factor, factor, 1), order=1)
        trim = (zoomed.shape[0] - 32) // 2
        return zoomed[trim : trim + 32, trim : trim + 32]

    factors = np.arange(1, 1.21, 0.01)
    ref = np.stack([(im / 255.0 + sum(clipped_zoom(im / 255.0, f) for f in factors)) / (len(factors) + 1) for im in images])
    assert np.abs(np.rint(ref * 255) - zoom_blur(images, 4, np.random.default_rng(0))).max() <= 1


def test_corrupt_by_label_applies_each_label_its_corruption():
    images = random_images(1, n=10)
    b = np.array([6, 7] * 5)
    out = corrupt_by_label(images, b, 3, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(out[b == 6], contrast(images[b == 6], 3, rng))
    np.testing.assert_array_equal(out[b == 7], brightness(images[b == 7], 3, rng))


# ---------------------------------------------------------------- corrupted_fmnist (real files)


@pytest.fixture(scope="module")
def fmnist():
    if not (FMNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST IDX files are not installed")
    return load_dataset("corrupted_fmnist", cache=False)


def test_corrupted_fmnist_splits_and_images(fmnist):
    assert [len(fmnist.split(s)) for s in ("train", "val", "test")] == [54000, 6000, 10000]
    assert fmnist.bias_names == list(CORRUPTION_ORDER) and fmnist.info["severity"] == 4
    train = fmnist.split("train")
    assert train.images.shape == (54000, 1, 28, 28) and train.spec.channels == 1
    x = train[0][0]
    assert x.shape == (1, 28, 28) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0


@pytest.mark.parametrize("split", ["train", "val"])
def test_corrupted_fmnist_conflicting_fraction_matches_ratio(fmnist, split):
    s = fmnist.split(split)
    assert abs(100 * fmnist.conflicting_fraction(split) - 1.0) <= 0.1
    table = fmnist.group_counts(split)
    for c in range(10):
        n_c = int(table.loc[c].sum())
        assert n_c - table.loc[c, c] == round(0.01 * n_c)
    assert len(s) == int(table.values.sum())


def test_corrupted_fmnist_test_is_balanced_and_corrupted_as_labelled(fmnist):
    table = fmnist.group_counts("test")
    assert (table.values == 100).all()
    test = fmnist.split("test")
    clean_images = load_mnist_like(FMNIST)["test"][0][..., None]
    k = CORRUPTION_ORDER.index("contrast")
    members = np.flatnonzero(test.b.numpy() == k)
    expected = contrast(clean_images[members], 4, np.random.default_rng(0))
    np.testing.assert_array_equal(test.images[members].numpy(), expected.transpose(0, 3, 1, 2))


# ---------------------------------------------------------------- corrupted_cifar10 (tiny fixture)


def write_batch(path: Path, labels: np.ndarray, seed: int) -> np.ndarray:
    """Write CIFAR-10 binary records; returns the images as (N, 32, 32, 3)."""
    rng = np.random.default_rng(seed)
    planes = rng.integers(0, 256, (len(labels), 3, 32, 32), dtype=np.uint8)
    records = np.concatenate([labels.astype(np.uint8)[:, None], planes.reshape(len(labels), -1)], axis=1)
    path.write_bytes(records.tobytes())
    return planes.transpose(0, 2, 3, 1)


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFDEBIAS_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "cifar-10-batches-bin"
    root.mkdir()
    for i, name in enumerate(CIFAR_TRAIN_FILES):
        write_batch(root / name, np.arange(20) % 10, seed=i)
    write_batch(root / CIFAR_TEST_FILE, np.arange(20) % 10, seed=9)
    return root


def test_read_cifar_bin_layout(tmp_path):
    path = tmp_path / "b.bin"
    images = write_batch(path, np.array([3, 7]), seed=0)
    x, y = read_cifar_bin(path)
    assert y.tolist() == [3, 7] and x.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(x, images)
    raw = np.fromfile(path, dtype=np.uint8)
    np.testing.assert_array_equal(x[0, :, :, 2].ravel(), raw[1 + 2048 : CIFAR_RECORD])  # blue plane last


def test_corrupted_cifar10_builds_with_group_table_and_cache(cifar_root, tmp_path):
    ds = load_dataset("corrupted_cifar10", root=cifar_root, ratio=10)
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [90, 10, 20]
    train = ds.split("train")
    assert train.images.shape == (90, 3, 32, 32) and ds.spec.size == 32 and ds.spec.channels == 3
    table = ds.group_counts("train")
    for c in range(10):
        n_c = int(table.loc[c].sum())
        assert n_c - table.loc[c, c] == round(0.1 * n_c)
    assert int(ds.group_counts("test").values.sum()) == 20
    assert Path(ds.info["cache_file"]).is_relative_to(tmp_path / "cache") and Path(ds.info["cache_file"]).is_file()
    again = load_dataset("corrupted_cifar10", root=cifar_root, ratio=10)
    assert torch.equal(again.split("train").images, train.images)


def test_truncated_cifar_batch_names_the_file(cifar_root):
    path = cifar_root / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="data_batch_3.bin"):
        load_dataset("corrupted_cifar10", root=cifar_root, cache=False)


def test_cifar_label_out_of_range_and_missing_file(cifar_root):
    write_batch(cifar_root / CIFAR_TEST_FILE, np.array([1, 12]), seed=0)
    with pytest.raises(DatasetError, match="test_batch.bin.*label 12"):
        load_dataset("corrupted_cifar10", root=cifar_root, cache=False)
    (cifar_root / CIFAR_TEST_FILE).unlink()
    with pytest.raises(DatasetError, match="test_batch.bin"):
        load_dataset("corrupted_cifar10", root=cifar_root, cache=False)


def test_bad_severity_option_is_refused(cifar_root):
    with pytest.raises(ConfigError, match="severity"):
        load_dataset("corrupted_cifar10", root=cifar_root, severity=6, cache=False)
