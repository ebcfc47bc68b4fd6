"""Synthetic datasets sampled from a trained generator, cached by what made them.

A synthetic set is a folder with `images.npy` (uint8 N x C x H x W), `labels.npy` (int64),
`meta.json` and PNG grids; the data layer loads it as dataset `synthetic` (bias unknown). The
folder name is a hash of (training data identity, model config, checkpoint digest, sampler,
steps, w, N per class, seed): asking again for the same set reuses it, after checking the
arrays against the digests in meta.json (a set that fails is sampled again, never used). Classes
are sampled one at a time into `parts/` so an interrupted generation resumes where it stopped.
Under several processes (accelerate launch) the classes are shared out among them; each class
has its own random generator, so the set is the same whatever the number of processes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import tracking
from ..data.synthetic import ARRAYS, is_complete, write_synthetic_set
from ..distributed import current
from ..errors import RunError
from ..io import atomic_path, build_lock, check_output_dir
from ..paths import cache_home
from ..runtime import resolve_device
from .pipeline import ClassConditionalPipeline
from .schedulers import sampling_scheduler, training_scheduler
from .train import load_unet


def checkpoint_digest(model_dir: Path) -> str:
    h = hashlib.blake2b(digest_size=12)
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        h.update(f.read_bytes())
    return h.hexdigest()


def synthetic_key(run_dir: Path, snapshot: int | None, sampler: str, steps: int, w: float, per_class: int, seed: int) -> str:
    meta = json.loads((Path(run_dir) / "config.json").read_text())
    model_dir = Path(run_dir) / ("unet_ema" if snapshot is None else f"snapshots/step{snapshot}")
    key = {
        "data": meta["data_identity"],
        "model": meta["config"],
        "checkpoint": checkpoint_digest(model_dir),
        "sampler": sampler,
        "steps": steps,
        "w": float(w),
        "per_class": per_class,
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def _valid_part(path: Path, per_class: int) -> bool:
    """A class part written by an earlier, interrupted generation, if it reads back whole."""
    try:
        arr = np.load(path, allow_pickle=False)
        return arr.dtype == np.uint8 and arr.ndim == 4 and len(arr) == per_class
    except (OSError, ValueError, EOFError):
        return False


def generate_synthetic(
    run_dir: Path,
    per_class: int,
    *,
    sampler: str = "dpmpp",
    steps: int = 10,
    w: float = 1.0,
    seed: int = 0,
    snapshot: int | None = None,
    out: Path | None = None,
    batch_size: int = 64,
    device: str = "auto",
    quiet: bool = False,
    classes: list[int] | None = None,
) -> Path:
    """Sample `per_class` images of every class from a trained generator; reuse a cached set."""
    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "config.json").read_text())
    key = synthetic_key(run_dir, snapshot, sampler, steps, w, per_class, seed)
    out = Path(out) if out is not None else cache_home() / "synthetic" / key
    dist = current()
    if is_complete(out):
        return out
    with build_lock(out, "sampling", dist.size):  # another process building it: wait, then reuse it
        if is_complete(out):
            return out
        dist.barrier()  # every process has looked before the main one removes anything
        if dist.is_main:
            for name in ("meta.json", *ARRAYS):  # failed verification: rebuild, never use
                (out / name).unlink(missing_ok=True)
        parts = out / "parts"
        unet = load_unet(run_dir, snapshot).to(resolve_device(device))
        size, channels = unet.config.sample_size, unet.config.in_channels
        n_classes = len(classes) if classes is not None else meta["num_classes"]
        # parts, then images.npy beside them and its temporary copy, then grids: about 3x the pixels
        check_output_dir(parts, 3 * n_classes * per_class * channels * size * size + 16 * 2**20)
        train_cfg = meta["config"]
        base = training_scheduler(train_cfg["schedule"], train_cfg["prediction"], train_cfg["timesteps"], train_cfg["beta_start"], train_cfg["beta_end"])
        pipe = ClassConditionalPipeline(unet, sampling_scheduler(sampler, base.config), null_class=meta["num_classes"])
        t0 = time.perf_counter()
        todo = list(classes if classes is not None else range(meta["num_classes"]))
        for c in todo[dist.rank :: dist.size]:
            part = parts / f"class{c}.npy"
            if part.exists() and _valid_part(part, per_class):
                continue
            gen = torch.Generator().manual_seed(seed * 100_003 + c)
            if not quiet:
                print(f"sampling class {c}: {per_class} images ({sampler}, {steps} steps, w={w})", flush=True)
            images = pipe(torch.full((per_class,), c), w=w, steps=steps, generator=gen, batch_size=batch_size)
            with atomic_path(part) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, images.numpy())
        dist.barrier()  # every class part is written
        if classes is not None:
            return out
        elapsed = time.perf_counter() - t0
        if dist.is_main:
            assemble(out, meta, per_class, {"processes": dist.size, "sampler": sampler, "steps": steps, "w": w, "seed": seed, "snapshot": snapshot, "generator_run": str(run_dir), "key": key, "sampling_wall_time_s": round(elapsed, 3)})
        dist.barrier()  # the assembled set exists before any process reads it
        return out


def assemble(out: Path, gen_meta: dict, per_class: int, extra: dict) -> None:
    """Join the per-class parts into one synthetic set (data/synthetic.py writes it), then drop the parts."""
    num_classes = gen_meta["num_classes"]
    chunks = [np.load(out / "parts" / f"class{c}.npy", allow_pickle=False) for c in range(num_classes)]
    if any(len(c) != per_class for c in chunks):
        raise RunError(f"{out / 'parts'}: a class part has the wrong number of images; delete the folder and sample again")
    meta = {"per_class": per_class, "class_names": gen_meta.get("class_names"), "source_dataset": gen_meta["dataset"],
            "source_ratio": gen_meta.get("ratio"), "data_identity": gen_meta["data_identity"], **extra}  # fmt: skip
    write_synthetic_set(out, np.concatenate(chunks), np.repeat(np.arange(num_classes), per_class), meta, num_classes)
    shutil.rmtree(out / "parts", ignore_errors=True)
    if tracking.active():  # the grid of the set (a row of samples per class), as written
        with Image.open(out / "grid.png") as grid:
            tracking.log_images({f"synthetic/{out.name}": grid}, step=0)
