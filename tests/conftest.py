"""Shared fixtures: an isolated cache and the real Colored Fashion-MNIST."""

from __future__ import annotations

from pathlib import Path

import pytest

FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Keep built datasets and generators of the tests out of the user's cache."""
    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("cache")
    mp.setenv("DIFFDEBIAS_CACHE", str(cache))
    yield cache
    mp.undo()


def require_fmnist() -> Path:
    if not (FMNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(f"Fashion-MNIST is not installed at {FMNIST}: apt-get install dataset-fashion-mnist (the README's test command does this)")
    return FMNIST


@pytest.fixture(scope="session")
def cfmnist():
    """Colored Fashion-MNIST at rho = 1% from the Debian package's real files."""
    from diffdebias.data import load_dataset

    return load_dataset("colored_fmnist", root=require_fmnist(), ratio=1.0)
