"""Diffusing DeBias, step B: the Bias Amplifier (BA), trained ONLY on the synthetic set (or on the
real training set with `ba_source=real`, the paper's ablation), frozen, and run on the real
training and validation images to infer per-sample bias scores and pseudo-groups.

A BA is cached by what makes it (its training data's identity, its training settings, the seed),
so the recipes of one dataset configuration and seed train each BA once. The true bias labels are
read only to measure how well the BA flags the real bias-conflicting samples (AUROC of its loss,
precision / recall of its errors), recorded in results.json.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch

from .. import energy, tracking
from ..data.base import BiasedDataset
from ..diffusion.train import data_identity
from ..engine.loop import Engine
from ..errors import ConfigError
from ..hparams import COMMON, PERFORMANCE_KEYS, SAFEGUARD_NEEDS, ba_architecture, resolve_hparams
from ..inference.bias_evidence import bias_evidence
from ..inference.bias_amplifier import GroupInference, diagnostics, infer_groups
from ..io import build_lock
from ..paths import cache_home
from ..records import BAAugmentNote
from ..trainers import ERM, GCE
from .generator import synthetic_set

BA_SOURCES = ("synthetic", "real")
# (zoom factor, rotation degrees) levels that `ba_augment=auto` chooses from, weakest first.
BA_AUGMENT_GRID = ((1.0, 0.0), (1.25, 0.0), (1.6, 15.0), (2.0, 30.0), (2.5, 45.0), (3.0, 90.0))
# settings of a training stage that do not change the trained weights
NOT_TRAINING = (*PERFORMANCE_KEYS, "device", "eval_batch_size", "checkpoint_every")


def ba_training_data(engine: Engine, hp: dict[str, Any], source: str) -> BiasedDataset:
    """The images the BA of `source` trains on: the synthetic set (step A) or the real training set."""
    if source not in BA_SOURCES:
        raise ConfigError(f"ba_source must be one of {BA_SOURCES}, got {source!r}")
    return synthetic_set(engine, hp) if source == "synthetic" else engine.data


def ba_settings(hp: dict[str, Any], augment: tuple[float, float], source: str | None = None) -> dict[str, Any]:
    """The hyperparameters of a BA training stage with geometric augmentation `augment`; the probe
    (the real-data BA next to a synthetic-trained one) takes `probe_model` when it is set."""
    scale, rotate = augment
    arch = ba_architecture(hp, source or "synthetic")
    return {**hp, "epochs": hp["ba_epochs"], "selection": "last", "q": hp["ba_q"], "weight_decay": hp["ba_weight_decay"],
            "augment": False, "affine_scale": scale, "affine_rotate": rotate,
            "model": arch, "pretrained": hp["pretrained"] if arch == hp["model"] else ""}  # fmt: skip


def ba_cache_dir(ba_data: BiasedDataset, ba_hp: dict[str, Any], loss: str, seed: int, device: torch.device, source: str) -> Path:
    """Where the BA trained on `ba_data` with `ba_hp` is cached (one key function for every BA)."""
    training = {k: ba_hp[k] for k in COMMON if k not in NOT_TRAINING} | {"q": ba_hp["q"]}
    key = {"data": data_identity(ba_data), "training": training, "loss": loss, "seed": seed, "device": device.type}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return cache_home() / "bias_amplifier" / f"{ba_data.name}-{digest}" / f"ba_{source}"


def train_bias_amplifier(engine: Engine, hp: dict[str, Any], source: str, ba_data: BiasedDataset,
                         augment: tuple[float, float] = (1.0, 0.0)) -> torch.nn.Module:  # fmt: skip
    """Train (or reuse) the BA of `source` on `ba_data` with augmentation `augment` = (zoom factor,
    rotation degrees); returns the frozen model."""
    if hp["ba_loss"] not in ("gce", "ce"):
        raise ConfigError(f"ba_loss must be 'gce' or 'ce', got {hp['ba_loss']!r}")
    ba_hp = ba_settings(hp, augment, source)
    folder = ba_cache_dir(ba_data, ba_hp, hp["ba_loss"], engine.seed, engine.device, source)
    ba_engine = Engine(ba_data, folder, engine.seed, engine.device, quiet=engine.quiet, resume=True)
    t0 = time.perf_counter()
    with energy.stage(f"ba_{source}"), build_lock(folder, "Bias Amplifier training", engine.dist.size):
        result = ba_engine.train_stage(f"ba_zoom{augment[0]:g}_rot{augment[1]:g}", GCE if hp["ba_loss"] == "gce" else ERM, ba_hp)
    engine.stage_times[f"ba_{source}"] = engine.stage_times.get(f"ba_{source}", 0.0) + time.perf_counter() - t0
    model = result.trainer.eval_model().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def choose_ba_augment(engine: Engine, hp: dict[str, Any], ba_data: BiasedDataset) -> tuple[tuple[float, float], torch.nn.Module | None]:
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
    engine.notes.ba_augment = BAAugmentNote("auto", rows, rows[i], uses_bias_labels=False)
    return (rows[i]["zoom"], rows[i]["rotate"]), models[i]


def ba_sources(hp: dict[str, Any]) -> list[str]:
    """The BAs a DDB run trains: its `ba_source`'s, then, with `ba_compare`, the other one (diagnostics only)."""
    return [hp["ba_source"]] + ([s for s in BA_SOURCES if s != hp["ba_source"]] if hp["ba_compare"] else [])


def erm_settings(engine: Engine) -> dict[str, Any]:
    """What a safeguarded recipe falls back to besides its inputs: ERM's weight decay on this dataset
    and ERM's selection (the BA's pseudo-groups that would select are noise when no bias was found)."""
    erm = resolve_hparams("erm", engine.data.name)
    return {"weight_decay": erm["weight_decay"], "selection": erm["selection"]}


def no_bias_found(engine: Engine, hp: dict[str, Any]) -> bool:
    """With `safeguard`, whether the bias evidence of this run's BA says it found no bias (then a
    recipe trains as ERM); a ConfigError when there is no evidence to judge by."""
    if not hp["safeguard"]:
        return False
    evidence = engine.notes.bias_evidence
    if evidence is None:
        raise ConfigError(SAFEGUARD_NEEDS)
    return not evidence.found


def bias_amplifier_groups(engine: Engine, hp: dict[str, Any]) -> dict[str, GroupInference]:
    """Bias scores and pseudo-groups of the real training and validation samples from the BA of
    `hp['ba_source']`. The validation pseudo-groups let model selection use `val_pseudo_unbiased`
    (no bias labels). With `ba_compare`, the BA of the other source is trained too, for the
    diagnostics only."""
    train, val = engine.data.split("train"), engine.data.split("val")
    aligned = engine.data.aligned_bias()
    sources = ba_sources(hp)
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
    engine.notes.ba_diagnostics = diag
    tracking.log_scalars({source: dataclasses.asdict(d) for source, d in diag.items()}, 0, prefix="bias_amplifier")
    engine.notes.ba_diagnostics_use_bias_labels = "evaluation only"
    chosen = results[hp["ba_source"]]
    engine.notes.pseudo_conflicting = int(chosen.conflicting.sum())
    val_logits = engine.logits(models[hp["ba_source"]], val, hp["eval_batch_size"], hp["num_workers"])
    if hp["ba_source"] == "synthetic" and "real" in models:  # the real-data BA is the probe (no bias labels)
        probe_logits = engine.logits(models["real"], val, hp["eval_batch_size"], hp["num_workers"])
        engine.notes.bias_evidence = bias_evidence(val_logits, probe_logits, val.y, hp["bias_evidence_min_lift"])
    return {"train": chosen, "val": infer_groups(val_logits, val.y, hp["ba_threshold"], hp["ba_grouping"])}
