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
from pathlib import Path

import torch

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
# (zoom factor, rotation degrees) levels that `ba_augment=auto` chooses from, weakest first.
BA_AUGMENT_GRID = ((1.0, 0.0), (1.25, 0.0), (1.6, 15.0), (2.0, 30.0), (2.5, 45.0), (3.0, 90.0))


def trained_generator(engine: Engine, hp: dict) -> tuple[Path, DiffusionConfig]:
    """The class-conditional generator of the dataset's default DiffusionConfig (with `gen_seed`
    and `gen_steps`), trained on the real training split or reused from the cache."""
    overrides = {"seed": hp["gen_seed"], "device": str(engine.device)}
    if hp["gen_steps"]:
        overrides["max_steps"] = hp["gen_steps"]
    cfg = DiffusionConfig.for_dataset(engine.data.name, overrides)
    t0 = time.perf_counter()
    with energy.stage("diffusion_train"):
        run = train_diffusion(engine.data, cfg, quiet=engine.quiet)
    engine.stage_times["diffusion_train"] = time.perf_counter() - t0
    return run, cfg


def synthetic_training_data(engine: Engine, hp: dict):
    """Step A: the (cached) generator and synthetic set; returns the synthetic dataset."""
    data = engine.data
    run, cfg = trained_generator(engine, hp)
    t0 = time.perf_counter()
    with energy.stage("sampling"):
        folder = generate_synthetic(run, hp["syn_per_class"], sampler=hp["sampler"], steps=hp["sampler_steps"], w=hp["w"],
                                    seed=hp["gen_seed"], device=str(engine.device), quiet=engine.quiet)  # fmt: skip
    engine.stage_times["sampling"] = time.perf_counter() - t0
    engine.note("generator", {"run": str(run), "synthetic_set": str(folder), "steps": cfg.max_steps, "seed": hp["gen_seed"],
                              "sampler": hp["sampler"], "sampler_steps": hp["sampler_steps"], "w": hp["w"], "per_class": hp["syn_per_class"]})  # fmt: skip
    return load_dataset("synthetic", root=folder).with_spec(data.spec)


def ba_training_data(engine: Engine, hp: dict, source: str):
    """The images the BA of `source` trains on: the synthetic set (step A) or the real training set."""
    if source not in BA_SOURCES:
        raise ConfigError(f"ba_source must be one of {BA_SOURCES}, got {source!r}")
    return synthetic_training_data(engine, hp) if source == "synthetic" else engine.data


def train_bias_amplifier(engine: Engine, hp: dict, source: str, ba_data, augment: tuple[float, float] = (1.0, 0.0)):
    """Step B: train the BA of `source` on `ba_data` (from `ba_training_data`) with geometric
    augmentation `augment` = (zoom factor, rotation degrees); returns the frozen model."""
    if hp["ba_loss"] not in ("gce", "ce"):
        raise ConfigError(f"ba_loss must be 'gce' or 'ce', got {hp['ba_loss']!r}")
    ba_engine = Engine(ba_data, engine.run_dir / f"ba_{source}", engine.seed, engine.device, quiet=engine.quiet, resume=True)
    scale, rotate = augment
    arch = hp["ba_model"] or hp["model"]
    ba_hp = {**hp, "epochs": hp["ba_epochs"], "selection": "last", "q": hp["ba_q"], "weight_decay": hp["ba_weight_decay"],
             "augment": False, "affine_scale": scale, "affine_rotate": rotate,
             "model": arch, "pretrained": hp["pretrained"] if arch == hp["model"] else ""}  # fmt: skip
    with energy.stage(f"ba_{source}"):
        result = ba_engine.train_stage(f"ba_zoom{scale:g}_rot{rotate:g}", GCE if hp["ba_loss"] == "gce" else ERM, ba_hp)
    engine.stage_times[f"ba_{source}"] = engine.stage_times.get(f"ba_{source}", 0.0) + result.wall_time_s
    model = result.method.eval_model().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def choose_ba_augment(engine: Engine, hp: dict, ba_data) -> tuple[tuple[float, float], torch.nn.Module | None]:
    """The geometric augmentation (zoom factor, rotation degrees) of the BA of `hp['ba_source']`,
    which trains on `ba_data`, and, with `auto`, the BA already trained with it.

    `auto` trains one BA per level of BA_AUGMENT_GRID and keeps the level whose BA is most accurate
    on the real validation split (class labels only, no bias labels), the strongest level on ties
    (within 0.05 points). On a biased validation split the most accurate BA is the one that relies
    most on the bias: augmentation removes the generator's shapes as a shortcut, not the bias.
    """
    mode = hp["ba_augment"]
    if mode == "none":
        return (1.0, 0.0), None
    if mode == "fixed":
        return (float(hp["ba_affine_scale"]), float(hp["ba_affine_rotate"])), None
    if mode != "auto":
        raise ConfigError(f"ba_augment must be one of auto, fixed, none; got {mode!r}")
    val = engine.data.split("val")
    rows, models = [], []
    for scale, rotate in BA_AUGMENT_GRID:
        models.append(train_bias_amplifier(engine, hp, hp["ba_source"], ba_data, (scale, rotate)))
        preds = engine.logits(models[-1], val, hp["eval_batch_size"], hp["num_workers"]).argmax(1)
        rows.append({"zoom": scale, "rotate": rotate, "val_acc": round(100 * float((preds == val.y).float().mean()), 2)})
    best = max(r["val_acc"] for r in rows)
    i = max(i for i, r in enumerate(rows) if r["val_acc"] >= best - 0.05)
    engine.note("ba_augment", {"mode": "auto", "candidates": rows, "chosen": rows[i], "uses_bias_labels": False})
    return (rows[i]["zoom"], rows[i]["rotate"]), models[i]


def bias_amplifier_groups(engine: Engine, hp: dict) -> dict[str, GroupInference]:
    """Pseudo-groups of the real training and validation samples from the BA of `hp['ba_source']`.

    The validation pseudo-groups let model selection use `val_pseudo_unbiased` (no bias labels).
    With `ba_compare`, the BA of the other source is trained too, for the diagnostics only.
    """
    train, val = engine.data.split("train"), engine.data.split("val")
    aligned = majority_bias(engine.train_counts) if engine.train_counts is not None else None
    sources = [hp["ba_source"]] + ([s for s in BA_SOURCES if s != hp["ba_source"]] if hp["ba_compare"] else [])
    results, diag, models = {}, {}, {}
    ba_data = {source: ba_training_data(engine, hp, source) for source in sources}
    augment, models[hp["ba_source"]] = choose_ba_augment(engine, hp, ba_data[hp["ba_source"]])
    for source in sources:
        if models.get(source) is None:
            models[source] = train_bias_amplifier(engine, hp, source, ba_data[source], augment)
        logits = engine.logits(models[source], train, hp["eval_batch_size"], hp["num_workers"])
        results[source] = infer_groups(logits, train.y, hp["ba_threshold"], hp["ba_grouping"])
        if aligned is not None:
            diag[source] = diagnostics(results[source], train, aligned)
    engine.note("ba_diagnostics", diag)
    engine.note("ba_diagnostics_use_bias_labels", "evaluation only")
    chosen = results[hp["ba_source"]]
    engine.note("pseudo_conflicting", int(chosen.conflicting.sum()))
    val_logits = engine.logits(models[hp["ba_source"]], val, hp["eval_batch_size"], hp["num_workers"])
    return {"train": chosen, "val": infer_groups(val_logits, val.y, hp["ba_threshold"], hp["ba_grouping"])}
