"""Diffusing DeBias, steps A and B, shared by its recipes (ddb1, ddb1_errset, ddb2).

A: a class-conditional diffusion model is trained on the biased training split (cached by data +
configuration) and a synthetic set is sampled with guidance w (cached too).
B: the Bias Amplifier is trained ONLY on that synthetic set (or on the real training set with
`ba_source=real`), frozen, and run on the real training images to infer pseudo-groups.
The true bias labels are read only to measure how well the BA flags the real bias-conflicting
samples (AUROC of its loss, precision / recall of its errors), recorded in results.json.
"""

from __future__ import annotations

import time

from . import energy
from .data.registry import load_dataset
from .diffusion.synthetic import generate_synthetic
from .diffusion.train import DiffusionConfig, train_diffusion
from .engine.loop import Engine
from .engine.metrics import majority_bias
from .errors import ConfigError
from .inference.bias_amplifier import GroupInference, diagnostics, infer_groups
from .methods.erm import ERM
from .methods.gce import GCE

BA_SOURCES = ("synthetic", "real")


def synthetic_training_data(engine: Engine, hp: dict):
    """Step A: the (cached) generator and synthetic set; returns the synthetic dataset."""
    data = engine.data
    overrides = {"seed": hp["gen_seed"], "device": str(engine.device)}
    if hp["gen_steps"]:
        overrides["max_steps"] = hp["gen_steps"]
    cfg = DiffusionConfig.for_dataset(data.name, overrides)
    t0 = time.perf_counter()
    with energy.stage("diffusion_train"):
        run = train_diffusion(data, cfg, quiet=engine.quiet)
    engine.stage_times["diffusion_train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with energy.stage("sampling"):
        folder = generate_synthetic(run, hp["syn_per_class"], sampler=hp["sampler"], steps=hp["sampler_steps"], w=hp["w"],
                                    seed=hp["gen_seed"], device=str(engine.device), quiet=engine.quiet)  # fmt: skip
    engine.stage_times["sampling"] = time.perf_counter() - t0
    engine.note("generator", {"run": str(run), "synthetic_set": str(folder), "steps": cfg.max_steps, "seed": hp["gen_seed"],
                              "sampler": hp["sampler"], "sampler_steps": hp["sampler_steps"], "w": hp["w"], "per_class": hp["syn_per_class"]})  # fmt: skip
    return load_dataset("synthetic", root=folder).with_spec(data.spec)


def train_bias_amplifier(engine: Engine, hp: dict, source: str):
    """Step B: train the BA on `source` ('synthetic' or 'real'); returns the frozen model."""
    if source not in BA_SOURCES:
        raise ConfigError(f"ba_source must be one of {BA_SOURCES}, got {source!r}")
    if hp["ba_loss"] not in ("gce", "ce"):
        raise ConfigError(f"ba_loss must be 'gce' or 'ce', got {hp['ba_loss']!r}")
    ba_data = synthetic_training_data(engine, hp) if source == "synthetic" else engine.data
    ba_engine = Engine(ba_data, engine.run_dir / f"ba_{source}", engine.seed, engine.device, quiet=engine.quiet, resume=True)
    ba_hp = {**hp, "epochs": hp["ba_epochs"], "selection": "last", "q": hp["ba_q"], "weight_decay": hp["ba_weight_decay"], "augment": False}
    with energy.stage(f"ba_{source}"):
        result = ba_engine.train_stage("ba", GCE if hp["ba_loss"] == "gce" else ERM, ba_hp)
    engine.stage_times[f"ba_{source}"] = result.wall_time_s
    model = result.method.eval_model().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def bias_amplifier_groups(engine: Engine, hp: dict) -> dict[str, GroupInference]:
    """Pseudo-groups of the real training and validation samples from the BA of `hp['ba_source']`.

    The validation pseudo-groups let model selection use `val_pseudo_unbiased` (no bias labels).
    With `ba_compare`, the BA of the other source is trained too, for the diagnostics only.
    """
    train, val = engine.data.split("train"), engine.data.split("val")
    aligned = majority_bias(engine.train_counts) if engine.train_counts is not None else None
    sources = [hp["ba_source"]] + ([s for s in BA_SOURCES if s != hp["ba_source"]] if hp["ba_compare"] else [])
    results, diag, models = {}, {}, {}
    for source in sources:
        models[source] = train_bias_amplifier(engine, hp, source)
        logits = engine.logits(models[source], train, hp["eval_batch_size"], hp["num_workers"])
        results[source] = infer_groups(logits, train.y, hp["ba_threshold"])
        if aligned is not None:
            diag[source] = diagnostics(results[source], train, aligned)
    engine.note("ba_diagnostics", diag)
    engine.note("ba_diagnostics_use_bias_labels", "evaluation only")
    chosen = results[hp["ba_source"]]
    engine.note("pseudo_conflicting", int(chosen.conflicting.sum()))
    val_logits = engine.logits(models[hp["ba_source"]], val, hp["eval_batch_size"], hp["num_workers"])
    return {"train": chosen, "val": infer_groups(val_logits, val.y, hp["ba_threshold"])}
