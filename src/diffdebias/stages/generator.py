"""The class-conditional generator (trained on the real training split, cached, or an exported one
given by `gen.from`) and its synthetic set (sampled with guidance w, cached), shared by DDB's
recipes and DiffuBias's local generator."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .. import energy
from ..data.base import BiasedDataset
from ..data.registry import load_dataset
from ..diffusion.estimate import read_estimate
from ..diffusion.export import imported_run, load_exported
from ..diffusion.synthetic import generate_synthetic
from ..diffusion.train import DiffusionConfig, data_identity, train_diffusion
from ..engine.loop import Engine
from ..hparams import GEN_FROM
from ..records import GeneratorNote


def generator_config(data: BiasedDataset, settings: dict[str, Any], device: str) -> DiffusionConfig:
    """THE generator configuration: the preset for `data`'s images on `device` ("auto": CUDA when
    available), with `settings` (DiffusionConfig fields: a run's `gen.*`, less `gen.from`) on top.
    Its `train_identity` is the generator's cache key."""
    fields = {k: v for k, v in settings.items() if k != GEN_FROM}
    return DiffusionConfig.resolve(data, {**fields, "device": device}, device)


def trained_generator(engine: Engine, hp: dict[str, Any]) -> tuple[Path, DiffusionConfig]:
    """The run's generator: the exported one of `gen.from` (verified, nothing trained), else the one
    of `generator_config`, trained on the real training split or reused from the cache."""
    t0 = time.perf_counter()
    with energy.stage("diffusion_train"):
        if GEN_FROM in hp["gen"]:
            run, cfg = exported_generator(engine, hp["gen"][GEN_FROM])
        else:
            cfg = generator_config(engine.data, hp["gen"], str(engine.device))
            run = train_diffusion(engine.data, cfg, quiet=engine.quiet)
    engine.stage_times["diffusion_train"] = time.perf_counter() - t0
    return run, cfg


def exported_generator(engine: Engine, folder: str) -> tuple[Path, DiffusionConfig]:
    """The exported generator in `folder`, verified, as a finished run; a warning when it was
    trained on other data than the run's."""
    exported = load_exported(folder)
    run = imported_run(exported)
    if not trained_on(engine.data, run) and engine.dist.is_main:
        print(f"warning: {folder}: this generator was trained on other data ({exported.meta['dataset']}, ratio {exported.meta['ratio']}, "
              f"data identity {exported.meta['data_identity']}) than this run's ({engine.data.name}, data identity {data_identity(engine.data)}); "
              "its synthetic images carry the bias of that data", flush=True)  # fmt: skip
    return run, exported.config


def trained_on(data: BiasedDataset, run: Path) -> bool:
    """Whether the generator run `run` was trained on `data`'s training split (same data identity)."""
    return json.loads((Path(run) / "config.json").read_text())["data_identity"] == data_identity(data)


def synthetic_set(engine: Engine, hp: dict[str, Any]) -> BiasedDataset:
    """The (cached) generator's (cached) synthetic set, `syn_per_class` images per class, as a dataset."""
    run, cfg = trained_generator(engine, hp)
    t0 = time.perf_counter()
    with energy.stage("sampling"):
        folder = generate_synthetic(run, hp["syn_per_class"], sampler=hp["sampler"], steps=hp["sampler_steps"], w=hp["w"],
                                    seed=cfg.seed, device=str(engine.device), quiet=engine.quiet)  # fmt: skip
    engine.stage_times["sampling"] = time.perf_counter() - t0
    source = hp["gen"].get(GEN_FROM)
    engine.notes.generator = GeneratorNote(str(run), str(folder), cfg.max_steps, cfg.seed, hp["sampler"], hp["sampler_steps"], hp["w"],
                                           hp["syn_per_class"], cfg.preset, read_estimate(run), source,
                                           None if source is None else trained_on(engine.data, run))  # fmt: skip
    return load_dataset("synthetic", root=folder).with_spec(engine.data.spec)
