"""The class-conditional generator (trained on the real training split, cached) and its synthetic
set (sampled with guidance w, cached), shared by DDB's recipes and DiffuBias's local generator."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .. import energy
from ..data.base import BiasedDataset
from ..data.registry import load_dataset
from ..diffusion.synthetic import generate_synthetic
from ..diffusion.estimate import read_estimate
from ..diffusion.train import DiffusionConfig, train_diffusion
from ..engine.loop import Engine
from ..records import GeneratorNote


def generator_config(data: BiasedDataset, settings: dict[str, Any], device: str) -> DiffusionConfig:
    """THE generator configuration: the preset for `data`'s images on `device` ("auto": CUDA when
    available), with `settings` (DiffusionConfig fields: a run's `gen.*`) on top. Its
    `train_identity` is the generator's cache key."""
    return DiffusionConfig.resolve(data, {**settings, "device": device}, device)


def trained_generator(engine: Engine, hp: dict[str, Any]) -> tuple[Path, DiffusionConfig]:
    """The generator of `generator_config`, trained on the real training split or reused from the cache."""
    cfg = generator_config(engine.data, hp["gen"], str(engine.device))
    t0 = time.perf_counter()
    with energy.stage("diffusion_train"):
        run = train_diffusion(engine.data, cfg, quiet=engine.quiet)
    engine.stage_times["diffusion_train"] = time.perf_counter() - t0
    return run, cfg


def synthetic_set(engine: Engine, hp: dict[str, Any]) -> BiasedDataset:
    """The (cached) generator's (cached) synthetic set, `syn_per_class` images per class, as a dataset."""
    run, cfg = trained_generator(engine, hp)
    t0 = time.perf_counter()
    with energy.stage("sampling"):
        folder = generate_synthetic(run, hp["syn_per_class"], sampler=hp["sampler"], steps=hp["sampler_steps"], w=hp["w"],
                                    seed=cfg.seed, device=str(engine.device), quiet=engine.quiet)  # fmt: skip
    engine.stage_times["sampling"] = time.perf_counter() - t0
    engine.notes.generator = GeneratorNote(str(run), str(folder), cfg.max_steps, cfg.seed, hp["sampler"], hp["sampler_steps"], hp["w"],
                                           hp["syn_per_class"], cfg.preset, read_estimate(run))  # fmt: skip
    return load_dataset("synthetic", root=folder).with_spec(engine.data.spec)
