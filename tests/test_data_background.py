"""background_fmnist: Fashion-MNIST garments on one background texture family per class."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from diffdebias.cli import main
from diffdebias.data import load_dataset
from diffdebias.data.background import ALPHA_RAMP, TEXTURE_NAMES, render_background, texture_levels
from diffdebias.data.colored import FMNIST_CLASSES
from diffdebias.data.idx import load_mnist_like
from diffdebias.errors import ConfigError

from .conftest import require_fmnist


@pytest.fixture(scope="module")
def bg():
    return load_dataset("background_fmnist", root=require_fmnist(), ratio=1.0)


@pytest.fixture(scope="module")
def source_test():
    return load_mnist_like(require_fmnist())["test"]


def split_arrays(ds, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = ds.split(name)
    return s.images.numpy(), s.y.numpy(), s.b.numpy()


def test_splits_exact_conflicting_counts_and_balanced_test(bg):
    assert [len(bg.split(s)) for s in ("train", "val", "test")] == [54000, 6000, 10000]
    assert bg.class_names == FMNIST_CLASSES and bg.bias_names == TEXTURE_NAMES == list(dict.fromkeys(TEXTURE_NAMES))
    x, y, b = split_arrays(bg, "train")
    assert x.shape[1:] == (3, 28, 28) and x.dtype == np.uint8
    for c in range(10):
        assert ((y == c) & (b != c)).sum() == round(0.01 * (y == c).sum())
    table = bg.group_counts("test").to_numpy()
    assert table.min() == table.max() == 100


def test_control_is_balanced_within_classes():
    ds = load_dataset("background_fmnist", root=require_fmnist(), bias_mode="independent", cache=False)
    for split in ("train", "val"):
        counts = ds.group_counts(split).to_numpy()
        assert (counts.max(1) - counts.min(1) <= 1).all()


def test_repeatable_build_and_seed_changes_it(bg):
    again = load_dataset("background_fmnist", root=require_fmnist(), ratio=1.0, cache=False)
    for split in ("train", "val", "test"):
        assert torch.equal(bg.split(split).images, again.split(split).images)
        assert torch.equal(bg.split(split).b, again.split(split).b)
    gray, y = load_mnist_like(require_fmnist())["test"]
    a, b = (render_background(gray[:200], y[:200], np.random.default_rng(s), 60.0) for s in (1, 2))
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, render_background(gray[:200], y[:200], np.random.default_rng(1), 60.0))


def test_garment_kept_and_background_two_grey_levels(bg, source_test):
    x, y, _ = split_arrays(bg, "test")
    gray, y_src = source_test
    assert np.array_equal(y, y_src)
    assert (x == x[:, :1]).all()  # grey: the three channels are equal
    opaque = gray >= ALPHA_RAMP
    np.testing.assert_array_equal(x[:, 0][opaque], gray[opaque])
    assert set(np.unique(x[:, 0][gray == 0])) == set(texture_levels(60))  # the default contrast


def background_features(x: np.ndarray, gray: np.ndarray) -> np.ndarray:
    """Per image: mean |difference| between background pixels at lags 1, 2, 3 along rows, columns and both diagonals."""
    img, bgm = x[:, 0].astype(np.float32), gray == 0
    feats = []
    for lag in (1, 2, 3):
        for di, dj in ((0, lag), (lag, 0), (lag, lag), (lag, -lag)):
            a = (slice(None), slice(0, 28 - di), slice(max(0, -dj), 28 - max(0, dj)))
            b = (slice(None), slice(di, 28), slice(max(0, dj), 28 - max(0, -dj)))
            both = bgm[a] & bgm[b]
            diff = np.abs(img[a] - img[b]) * both
            feats.append(diff.sum((1, 2)) / np.maximum(both.sum((1, 2)), 1))
    return np.stack(feats, 1)


def test_texture_families_are_distinguishable(bg, source_test):
    x, _, b = split_arrays(bg, "test")
    f = background_features(x, source_test[0])
    h, v = f[:, 0], f[:, 1]  # lag-1 change along a row / down a column
    assert (v[b == 0] > 5 * h[b == 0]).mean() > 0.95  # horizontal stripes change down columns
    assert (h[b == 1] > 5 * v[b == 1]).mean() > 0.95
    f = (f - f.mean(0)) / f.std(0)
    fit, held = np.arange(len(b)) % 2 == 0, np.arange(len(b)) % 2 == 1
    centroids = np.stack([f[fit & (b == k)].mean(0) for k in range(10)])
    pred = np.argmin(((f[held, None] - centroids) ** 2).sum(-1), 1)
    assert (pred == b[held]).mean() > 0.8  # chance: 0.1


@pytest.mark.parametrize("value", [0, 91, "dark", None])
def test_bad_texture_contrast_refused(value):
    with pytest.raises(ConfigError, match="texture_contrast"):
        load_dataset("background_fmnist", root=require_fmnist(), texture_contrast=value, cache=False)


def test_listed_and_shown_by_the_cli(bg):
    runner = CliRunner()
    listed = runner.invoke(main, ["datasets"], catch_exceptions=False)
    assert "background_fmnist" in listed.output
    shown = runner.invoke(main, ["datasets", "show", "background_fmnist"], catch_exceptions=False)
    assert shown.exit_code == 0 and "bias-conflicting: 1.00%" in shown.output
