"""Tiny on-disk datasets for fast end-to-end reliability tests (no downloads, seconds on CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# Child processes that must compute bit for bit like this one use the same single intra-op thread.
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for the module: tiny models run faster, and on a busy shared CPU
    several OpenMP threads per process spin against each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

# A short classifier run on the tiny folder_csv set (CLI --set form and run_method form).
CLS_SETS = {"epochs": 3, "batch_size": 16, "device": "cpu", "data.image_size": 8}


def cls_args(out: Path, seed: int = 0, extra: tuple[str, ...] = ()) -> list[str]:
    """`diffdebias run erm` arguments for the tiny folder_csv set under `out.parent / 'data'`."""
    args = ["run", "erm", "--dataset", "folder_csv", "--root", str(out.parent / "data"), "--seed", str(seed), "--out", str(out), "-q"]
    for k, v in CLS_SETS.items():
        args += ["--set", f"{k}={v}"]
    return args + list(extra)


def make_folder_csv(root: Path, n_train: int = 64, n_eval: int = 16, size: int = 8, seed: int = 0) -> Path:
    """Two classes (bright square / dark) biased by a colour (red / blue): 90% aligned in train."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = ["id,filename,split,y,a"]
    i = 0
    for split, n in ((0, n_train), (1, n_eval), (2, n_eval)):
        for k in range(n):
            y = k % 2
            a = y if (split == 0 and rng.random() < 0.9) else int(rng.integers(0, 2))
            img = rng.integers(0, 40, (size, size, 3)).astype(np.uint8)
            if y:
                img[2:-2, 2:-2] += 150
            img[..., 0 if a == 0 else 2] += 60
            Image.fromarray(img).save(root / "img" / f"{i}.png")
            rows.append(f"{i},img/{i}.png,{split},{y},{a}")
            i += 1
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def make_synthetic_set(root: Path, per_class: int = 8, num_classes: int = 3, size: int = 8, seed: int = 0) -> Path:
    """A `synthetic`-format dataset (images.npy, labels.npy, meta.json) to train generators on."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    labels = np.repeat(np.arange(num_classes), per_class)
    images = rng.integers(0, 60, (len(labels), 3, size, size)).astype(np.uint8)
    for c in range(num_classes):
        images[labels == c, c % 3] += 150
    np.save(root / "images.npy", images)
    np.save(root / "labels.npy", labels.astype(np.int64))
    (root / "meta.json").write_text(json.dumps({"num_classes": num_classes}))
    return root


# A short diffusion run on the tiny synthetic set (checkpoints at steps 2 and 4).
DIFF_SETS = {"max_steps": 4, "batch_size": 4, "warmup_steps": 1, "checkpoint_every": 2, "device": "cpu"}


def diff_args(data_root: Path, out: Path, extra: tuple[str, ...] = ()) -> list[str]:
    args = ["diffusion", "train", "--dataset", "synthetic", "--root", str(data_root), "--out", str(out), "-q"]
    for k, v in DIFF_SETS.items():
        args += ["--set", f"{k}={v}"]
    return args + list(extra)
