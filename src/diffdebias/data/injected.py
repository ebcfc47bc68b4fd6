"""Datasets whose bias is injected into clean images (colour, corruption), LfF protocol.

Every class c has a bias-aligned attribute value b = c. On train, exactly
round(rho * n_c) samples of each class get a uniformly random *other* value (bias-conflicting);
val is held out from the same distribution by default (same ratio), or bias-uniform on request;
test (from the official test images) is balanced over the (y, b) cells. Built once per
configuration and cached on disk (written atomically, verified on load).

`bias_mode="independent"` is the no-bias control: train and val bias values are balanced within
every class (the attribute carries no information about the class) and the ratio is ignored.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ConfigError
from ..io import atomic_path
from ..paths import cache_home
from .base import BiasedDataset, ImageSpec, TensorSplit

PROTOCOL_VERSION = 1
Render = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]
VAL_MODES = ("heldout", "uniform")
BIAS_MODES = ("class", "independent")
# Options added after caches keyed by the dataset's identity existed: at this value they are left
# out of the identity (diffusion/train.py `data_identity`), so cached generators and judges stay valid.
IDENTITY_NEUTRAL_OPTIONS = {"bias_mode": "class"}


def assign_biased(y: np.ndarray, num_bias: int, ratio_pct: float, rng: np.random.Generator) -> np.ndarray:
    """b = y except for exactly round(ratio * n_c) random samples per class, which get another value."""
    b = y.copy()
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        n_conf = int(round(ratio_pct / 100.0 * len(members)))
        chosen = rng.choice(members, size=n_conf, replace=False)
        offsets = rng.integers(1, num_bias, size=n_conf)
        b[chosen] = (c + offsets) % num_bias
    return b


def assign_uniform(y: np.ndarray, num_bias: int, rng: np.random.Generator) -> np.ndarray:
    """Bias values balanced within each class (cell counts differ by at most one)."""
    b = np.empty_like(y)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        values = np.arange(len(members)) % num_bias
        b[members] = rng.permutation(values)
    return b


def _fingerprint(*arrays: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def protocol_settings(opts: dict) -> dict:
    """The protocol options every injected dataset takes (seed, val_mode, val_fraction, cache,
    bias_mode), read from a dataset's options as `build_injected`'s keyword arguments."""
    return {"seed": int(opts["seed"]), "val_mode": opts["val_mode"], "val_fraction": float(opts["val_fraction"]), "cache": bool(opts["cache"]),
            "bias_mode": opts["bias_mode"]}  # fmt: skip


def build_injected(
    name: str,
    source: dict[str, tuple[np.ndarray, np.ndarray]],
    render: Render,
    render_params: dict,
    *,
    num_bias: int,
    ratio: float,
    seed: int,
    val_mode: str,
    val_fraction: float,
    spec: ImageSpec,
    class_names: list[str],
    bias_names: list[str],
    cache: bool = True,
    bias_mode: str = "class",
) -> BiasedDataset:
    """Inject the bias into `source` ({'train': (images, y), 'test': ...}) and cache the result."""
    if val_mode not in VAL_MODES:
        raise ConfigError(f"dataset '{name}' option 'val_mode' must be one of {VAL_MODES}, got {val_mode!r}")
    if bias_mode not in BIAS_MODES:
        raise ConfigError(f"dataset '{name}' option 'bias_mode' must be one of {BIAS_MODES}, got {bias_mode!r} (--set data.bias_mode=...)")
    if bias_mode == "independent":
        ratio = None
    if not 0.0 < val_fraction < 0.5:
        raise ConfigError(f"dataset '{name}' option 'val_fraction' must be in (0, 0.5), got {val_fraction}")
    key_obj = {
        "name": name,
        "protocol": PROTOCOL_VERSION,
        "ratio": ratio,
        "seed": seed,
        "val_mode": val_mode,
        "val_fraction": val_fraction,
        "render": render_params,
        "source": _fingerprint(*source["train"], *source["test"]),
    }
    if bias_mode != "class":  # keeps the keys of existing cached builds
        key_obj["bias_mode"] = bias_mode
    key = hashlib.sha256(json.dumps(key_obj, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_home() / "datasets" / name / f"{key}.npz"
    arrays = _load_cache(path, key) if cache else None
    if arrays is None:
        arrays = _build(source, render, num_bias, ratio, seed, val_mode, val_fraction, bias_mode)
        if cache:
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, key=np.array(key), **arrays)
    splits = {
        s: TensorSplit(s, arrays[f"{s}_x"], arrays[f"{s}_y"], arrays[f"{s}_b"], spec) for s in ("train", "val", "test")
    }
    info = {"ratio": ratio, **({"bias_mode": bias_mode} if bias_mode != "class" else {}), "data_seed": seed, "val_mode": val_mode, "cache_file": str(path) if cache else None, **render_params}
    return BiasedDataset(name, splits, len(class_names), num_bias, spec, class_names, bias_names, info)


def _load_cache(path: Path, key: str) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
            return {k: data[k] for k in data.files if k != "key"}
    except Exception:  # a cache entry that fails to verify is rebuilt, never used
        return None


def _build(source, render, num_bias, ratio, seed, val_mode, val_fraction, bias_mode="class") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    images, y = source["train"]
    order = rng.permutation(len(y))
    n_val = int(round(val_fraction * len(y)))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    test_images, test_y = source["test"]
    biased = bias_mode == "class"
    parts = {
        "train": (images[train_idx], y[train_idx], assign_biased(y[train_idx], num_bias, ratio, rng) if biased else assign_uniform(y[train_idx], num_bias, rng)),
        "val": (
            images[val_idx],
            y[val_idx],
            assign_biased(y[val_idx], num_bias, ratio, rng) if val_mode == "heldout" and biased else assign_uniform(y[val_idx], num_bias, rng),
        ),
        "test": (test_images, test_y, assign_uniform(test_y, num_bias, rng)),
    }
    out = {}
    for split, (x, yy, b) in parts.items():
        out[f"{split}_x"] = render(x, b, rng)
        out[f"{split}_y"] = yy.astype(np.int64)
        out[f"{split}_b"] = b.astype(np.int64)
    return out
