"""Every classifier hyperparameter, declared once, with its defaults.

Resolution order (later wins): COMMON < METHOD_DEFAULTS[method] < DATASET_DEFAULTS[dataset] (the
keys the method declares) < METHOD_DATASET_DEFAULTS[(method, dataset)] < command-line `--set key=value`.
Unknown keys are refused with the list of valid keys. Methods that train a generator (DDB,
DiffuBias) declare `gen`: the generator's settings (`--set gen.KEY=VALUE`, any field of
diffusion.train.DiffusionConfig), checked against DiffusionConfig when resolved, or alone
`gen.from=DIR`: a generator exported by `diffdebias diffusion export`, used instead of training one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import coerce
from .diffusion.train import DiffusionConfig
from .errors import ConfigError
from .models import MODEL_NAMES

GEN_FROM = "from"  # gen.from=DIR: an exported generator's folder (diffusion/export.py) instead of training one

COMMON: dict[str, Any] = {
    "model": "mlp",  # mlp | cnn | resnet18 | resnet50
    "pretrained": "",  # local weights file for resnets (safetensors or plain state dict)
    "optimizer": "adam",  # adam | adamw | sgd
    "lr": 1e-3,
    "weight_decay": 0.0,
    "momentum": 0.9,
    "schedule": "none",  # none | cosine
    "epochs": 20,
    "batch_size": 256,
    "eval_batch_size": 1024,
    "grad_clip": 0.0,  # 0 = off
    "augment": False,  # random crop + horizontal flip for real-image datasets
    # random zoom in [1/affine_scale, affine_scale], rotation +-affine_rotate degrees, shift, flip
    # (engine/augment.py); replaces `augment` when set. 1 / 0 = off.
    "affine_scale": 1.0,
    "affine_rotate": 0.0,
    # last | val_avg | val_worst_class (no bias labels) | val_unbiased | val_wga (val bias labels).
    # `last` by default: a validation split with the training bias rewards biased checkpoints.
    "selection": "last",
    "num_workers": 0,
    "amp": True,  # bf16 autocast, CUDA only; ignored on CPU
    "channels_last": True,  # channels-last memory format, CUDA only; ignored on CPU
    "compile": False,  # torch.compile of the trained models (any device; the first steps compile)
    "device": "auto",  # auto | cpu | cuda | cuda:N
    "checkpoint_every": 1,  # epochs
}

# Diffusing DeBias, shared by its recipes: the generator (cached; its seed `gen.seed` is fixed by
# default so that seeds and recipes share one generator), the synthetic set and the Bias Amplifier.
DDB_DEFAULTS: dict[str, Any] = {
    # the generator's settings that differ from the preset's (DiffusionConfig fields, e.g.
    # {"preset": "cpu-tiny", "max_steps": 2000}); empty = the preset chosen for the images and device
    "gen": {},
    "syn_per_class": 300,
    "sampler": "dpmpp",
    "sampler_steps": 10,
    "w": 1.0,
    "ba_source": "synthetic",  # synthetic | real (the paper's ablation)
    "ba_loss": "gce",  # gce | ce
    "ba_q": 0.7,
    "ba_epochs": 20,
    "ba_weight_decay": 0.0,
    "ba_model": "",  # the BA's architecture (mlp | cnn | resnet18 | resnet50); empty = the debiased model's
    # geometric augmentation of the BA's training images: auto (level chosen by the BA's accuracy
    # on the real validation split, no bias labels; ddb.choose_ba_augment) | fixed (the two below) | none
    "ba_augment": "auto",
    "ba_affine_scale": 3.0,
    "ba_affine_rotate": 90.0,  # the BA's own; the recipe's weight_decay is the debiased model's
    # pseudo-groups: pred = (class, BA-predicted class as pseudo-bias label), the paper's Recipe I;
    # binary = class x {aligned, conflicting}. Used by Recipe I and by val_pseudo_unbiased selection.
    "ba_grouping": "pred",
    "ba_threshold": 0.0,  # 0: pseudo-conflicting = misclassified by the BA; else p(y) < threshold
    "ba_compare": True,  # also train the BA on the other source (diagnostics; the real-data BA is the bias-evidence probe)
    "probe_model": "",  # the real-data BA's architecture when the BA trains on synthetic images; empty = ba_model's
    # the bias evidence (inference/bias_evidence.py): the BA found a bias when the real-data probe
    # repeats its mistakes more than bias_evidence_min_lift x chance
    "bias_evidence_min_lift": 5.0,
    # early stopping on the BA's validation pseudo-groups: no bias labels (engine/selection.py)
    "selection": "val_pseudo_unbiased",
}

# DiffuBias (METHODS.md s. 2): GCE biased classifier -> top-K candidates per class -> captioner ->
# text filter -> generator -> CE on real + synthetic. The local-conditional generator is the
# diffusion engine's class-conditional model, shared with DDB (the same `gen` settings, one cache key).
DIFFUBIAS_DEFAULTS: dict[str, Any] = {
    "q": 0.7,
    "bias_epochs": 20,  # the GCE biased classifier
    "num_candidates": 0,  # per class; 0 = DiffuBias's K: 100, 200 at the 5% ratio
    "captioner": "auto",  # auto (none for local-conditional, transformers for diffusers-t2i) | transformers | none
    "captioner_model": "Salesforce/blip-image-captioning-large",  # local folder or repository id in the local HF cache
    "captioner_prompt": "",  # text prefix for conditional captioners (BLIP) or the chat prompt (LLaVA-style)
    "num_captions": 3,  # per candidate; without a captioner: images per candidate
    "caption_max_tokens": 30,
    "top_words": 0,  # words the text filter keeps; 0 = 2 x num_classes
    "generator": "local-conditional",  # local-conditional (offline adaptation) | diffusers-t2i (the paper's)
    "t2i_model": "stabilityai/stable-diffusion-3.5-large",  # local folder or repository id in the local HF cache
    "t2i_steps": 28,
    "t2i_guidance": 3.5,
    "t2i_size": 0,  # 0 = the pipeline's default resolution
    "gen_batch_size": 16,  # captioning and text-to-image batches
    "gen": {},  # local-conditional: the generator's settings, as DDB's
    "sampler": "dpmpp",
    "sampler_steps": 20,  # of the full schedule; SDEdit runs round(strength x sampler_steps) of them
    # SDEdit: the largest change that still keeps >= 95% of the candidates' colour (BENCHMARKS.md, DiffuBias)
    "w": 0.0,
    "strength": 0.2,
    "audit": True,  # measure the generated images with the diffusion audit's judges (bias labels: evaluation only)
}

# LISA (trainers/lisa.py): mixup ratio ~ Beta(alpha, alpha), probability of a same-class partner
LISA_DEFAULTS: dict[str, Any] = {"lisa_alpha": 2.0, "lisa_p_intra_label": 0.5}

# Recipe I's no-harm safeguard: when the bias evidence says no bias was found, the recipe trains as
# ERM. Declared only by the recipes with that fallback (Recipe II has none).
RECIPE_I_DEFAULTS: dict[str, Any] = {**DDB_DEFAULTS, "safeguard": False}
# why a key some methods declare is not another's (added to the unknown-key error)
NOT_DECLARED_BECAUSE = {"safeguard": "the safeguard falls back to ERM, which only Recipe I (ddb, ddb1*) can do"}

METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "erm": {},
    "gce": {"q": 0.7},
    "lff": {"q": 0.7, "ema": 0.7},
    "jtt": {"jtt_epochs": 1, "lambda_up": 50},
    "jtt_weighted": {"jtt_epochs": 1, "lambda_up": 50},
    "groupdro": {"groups": "oracle", "eta": 0.01, "group_adj": 0.0, "balanced_sampling": True},
    "resample_oracle": {"groups": "oracle"},
    "lisa_oracle": {"groups": "oracle", **LISA_DEFAULTS},
    "dfr_oracle": {"dfr_epochs": 20},  # the last layer's retraining epochs on the validation split (recipes/dfr.py)
    "ddb1": {**RECIPE_I_DEFAULTS, "eta": 0.01, "group_adj": 0.0, "balanced_sampling": True},
    "ddb1_resample": dict(RECIPE_I_DEFAULTS),
    # the recommended recipe (README): BA pseudo-groups -> group-balanced resampling, with the no-harm safeguard
    "ddb": {**RECIPE_I_DEFAULTS, "safeguard": True},
    "ddb1_lisa": {**RECIPE_I_DEFAULTS, **LISA_DEFAULTS},
    "ddb1_dfr": {**RECIPE_I_DEFAULTS, "dfr_epochs": 20, "selection": "last"},
    "ddb1_errset": {**RECIPE_I_DEFAULTS, "lambda_up": 50},
    "ddb1_errset_weighted": {**RECIPE_I_DEFAULTS, "lambda_up": 50},
    "ddb2": {**DDB_DEFAULTS, "ema": 0.7},
    "diffubias": dict(DIFFUBIAS_DEFAULTS),
}

DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "colored_fmnist": {"model": "mlp", "epochs": 20, "lr": 1e-3, "batch_size": 256},
    "colored_mnist": {"model": "mlp", "epochs": 20, "lr": 1e-3, "batch_size": 256},
    "cmnist": {"model": "mlp", "epochs": 20, "lr": 1e-3, "batch_size": 256},
    # The MLP, as on the coloured sets: per CPU thread it trains ~100x faster than the small CNN
    # (108k vs 1.0k img/s, BENCHMARKS.md), which puts the cpu preset's corrupted part in hours instead
    # of days; ERM on it is still strongly biased (rho = 1%: 61% unbiased vs 86% on the control).
    # `--set model=cnn` for the convolutional model.
    "corrupted_fmnist": {"model": "mlp", "epochs": 20, "lr": 1e-3, "batch_size": 256},
    # The backgrounds' textures need a longer-trained generator than the CPU preset's 470 steps, which
    # draws plain dark backgrounds (development runs, BENCHMARKS.md); every DDB / DiffuBias recipe shares it.
    "background_fmnist": {"model": "mlp", "epochs": 20, "lr": 1e-3, "batch_size": 256, "gen": {"max_steps": 3000}},
    "corrupted_cifar10": {"model": "resnet18", "epochs": 100, "lr": 1e-3, "batch_size": 256, "augment": True},
    "cifar10c": {"model": "resnet18", "epochs": 100, "lr": 1e-3, "batch_size": 256, "augment": True},
    "bffhq": {"model": "resnet18", "epochs": 100, "lr": 1e-4, "batch_size": 64, "augment": True},
    "bar": {"model": "resnet18", "epochs": 100, "lr": 1e-4, "batch_size": 64, "augment": True},
    "waterbirds": {"model": "resnet50", "optimizer": "sgd", "lr": 1e-3, "weight_decay": 1e-4, "epochs": 300, "batch_size": 64, "augment": True},
    "celeba": {"model": "resnet50", "optimizer": "sgd", "lr": 1e-4, "weight_decay": 1e-4, "epochs": 50, "batch_size": 128, "augment": True},
    "urbancars": {"model": "resnet50", "optimizer": "sgd", "lr": 1e-3, "weight_decay": 1e-4, "epochs": 300, "batch_size": 128, "augment": True},
    "imagenet9": {"model": "resnet18", "optimizer": "adam", "lr": 1e-3, "epochs": 120, "batch_size": 128, "augment": True},
}

# Group DRO as its paper prescribes: strong weight decay and early stopping on validation. On the
# 28 px sets weight decay 1e-3 was chosen over 1e-2 by validation unbiased accuracy (BENCHMARKS.md).
# The oracle may select with validation bias labels (recorded); DDB's Recipe I may not.
_GDRO_28PX = {"weight_decay": 1e-3}
FMNIST_28PX = ("colored_fmnist", "colored_mnist", "corrupted_fmnist", "background_fmnist", "cmnist")
METHOD_DATASET_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    **{("groupdro", d): {**_GDRO_28PX, "selection": "val_unbiased"} for d in FMNIST_28PX},
    **{("ddb1", d): dict(_GDRO_28PX) for d in FMNIST_28PX},
    # development runs (data seed 1, BENCHMARKS.md): resampling with strong weight decay (1e-2 over 1e-3);
    # a convolutional BA (the MLP's misses most corruptions: BA AUROC 0.88 against 0.74 on Corrupted at 1%),
    # next to a cheap MLP probe for the bias evidence
    **{("ddb", d): {"weight_decay": 1e-2, "ba_model": "cnn", "probe_model": "mlp"} for d in FMNIST_28PX},
    # the oracle twin of `ddb` (its trainer on the TRUE groups, targets.py): the same weight decay
    **{("resample_oracle", d): {"weight_decay": 1e-2} for d in FMNIST_28PX},
}


# Defaults that were chosen with bias labels, and on what, recorded in every run that uses them
# (results.json `bias_labels_used.defaults`, the `bias_labels` column of collect and the report).
VAL_LABELS = "val bias labels"
DEV_RUNS = "development runs, data seed 1"  # test unbiased accuracy on another split than the final grid's
DEFAULTS_CHOSEN_WITH_BIAS_LABELS: dict[tuple[str, str], dict[str, str]] = {
    # chosen for the Group DRO oracle by validation unbiased accuracy, BENCHMARKS.md
    **{("ddb1", d): {"weight_decay": VAL_LABELS} for d in FMNIST_28PX},
    # the recommended recipe's weight decay (1e-2 against 1e-3): BENCHMARKS.md, development runs
    **{("ddb", d): {"weight_decay": DEV_RUNS, "ba_model": DEV_RUNS} for d in FMNIST_28PX},
    **{("resample_oracle", d): {"weight_decay": DEV_RUNS} for d in FMNIST_28PX},  # ddb's, above
}


# The same for a dataset's defaults, in every method that declares the key.
DATASET_DEFAULTS_CHOSEN_WITH_BIAS_LABELS: dict[str, dict[str, str]] = {
    "background_fmnist": {"gen": DEV_RUNS},  # the generator's budget, by the BA's AUROC next to the samples
}


def defaults_chosen_with_bias_labels(method: str, dataset: str, overrides: dict[str, Any] | None) -> list[str]:
    """The hyperparameters of this run whose value is a default chosen with bias labels (not
    overridden), each as `key (what chose it)`."""
    keys = declared_keys(method)
    chosen = {k: how for k, how in DATASET_DEFAULTS_CHOSEN_WITH_BIAS_LABELS.get(dataset, {}).items() if k in keys}
    chosen |= DEFAULTS_CHOSEN_WITH_BIAS_LABELS.get((method, dataset), {})
    overridden = {k.split(".", 1)[0] for k in overrides or {}}
    return [f"{k} ({how})" for k, how in chosen.items() if k not in overridden]


def declared_keys(method: str) -> dict[str, Any]:
    """Every key valid for `method` with its generic default."""
    if method not in METHOD_DEFAULTS:
        raise ConfigError(f"unknown method '{method}'; valid: {', '.join(sorted(METHOD_DEFAULTS))}")
    return {**COMMON, **METHOD_DEFAULTS[method]}


def declares(keys: dict[str, Any], key: str) -> bool:
    """Whether `key` (a plain key, or `gen.FIELD`) is valid where `keys` are declared."""
    return key.split(".", 1)[0] in keys if key.startswith("gen.") else key in keys


SAFEGUARD_NEEDS = ("safeguard=true needs the bias evidence, which the real-data probe gives: ba_source=synthetic with ba_compare=true "
                   "(or set safeguard=false)")


def resolve_hparams(method: str, dataset: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The resolved hyperparameters of `method` on `dataset` with `overrides` applied."""
    hp = declared_keys(method)
    for layer in (DATASET_DEFAULTS.get(dataset, {}), METHOD_DATASET_DEFAULTS.get((method, dataset), {})):
        hp.update({k: v for k, v in layer.items() if k in hp})
    gen: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if not declares(hp, key):
            valid = sorted(hp) + (["gen.KEY (a DiffusionConfig field)"] if "gen" in hp else [])
            why = f" ({NOT_DECLARED_BECAUSE[key]})" if key in NOT_DECLARED_BECAUSE else ""
            raise ConfigError(f"unknown hyperparameter '{key}' for method '{method}'{why}; valid keys: {', '.join(valid)}")
        if key.startswith("gen."):
            gen[key[4:]] = value
        elif key == "gen":
            gen.update(value)
        else:
            hp[key] = coerce(value, hp[key], key)
    if "gen" in hp:  # the changed fields only (a dataset's defaults, then the overrides; an export alone), as their DiffusionConfig types
        hp["gen"] = generator_settings(gen if GEN_FROM in gen else {**hp["gen"], **gen})
    for key in ("model", "ba_model", "probe_model"):  # checked now, not when the stage that builds it starts
        if hp.get(key) and hp[key] not in MODEL_NAMES:
            raise ConfigError(f"hyperparameter '{key}': unknown model {hp[key]!r}; valid: {', '.join(MODEL_NAMES)}")
    if hp.get("safeguard") and not (hp["ba_source"] == "synthetic" and hp["ba_compare"]):
        raise ConfigError(SAFEGUARD_NEEDS)
    return hp


def generator_settings(gen: dict[str, Any]) -> dict[str, Any]:
    """`gen` (generator settings by DiffusionConfig field) checked and read as the fields' types;
    or `{"from": DIR}` with DIR made absolute."""
    if GEN_FROM in gen:
        return {GEN_FROM: exported_folder(gen)}
    cfg = DiffusionConfig.from_overrides(gen, prefix="gen.")
    return {k: getattr(cfg, k) for k in gen}


def exported_folder(gen: dict[str, Any]) -> str:
    """The absolute folder of `gen.from`, an existing directory given alone (an exported
    generator's training settings are its own)."""
    others = sorted(k for k in gen if k != GEN_FROM)
    if others:
        raise ConfigError(f"hyperparameter 'gen.{GEN_FROM}' uses an exported generator as it was trained; drop 'gen.{others[0]}' (its settings are the exported ones)")
    value = gen[GEN_FROM]
    if not isinstance(value, (str, Path)) or not str(value) or not Path(value).expanduser().is_dir():
        raise ConfigError(f"hyperparameter 'gen.{GEN_FROM}': {value!r} is not a directory; give the folder written by `diffdebias diffusion export RUN DIR`")
    return str(Path(value).expanduser().resolve())


# Settings that change speed, not results: a run may be resumed with other values of these.
PERFORMANCE_KEYS = ("channels_last", "compile", "num_workers")


def ba_architecture(hp: dict[str, Any], source: str) -> str:
    """The model of the Bias Amplifier trained on `source` ("synthetic" | "real"): `ba_model` (else
    the classifier's), except the real-data probe next to a synthetic-trained BA, which takes
    `probe_model` when it is set."""
    probe = source == "real" and hp.get("ba_source") == "synthetic" and hp.get("probe_model")
    return (hp["probe_model"] if probe else hp.get("ba_model")) or hp["model"]
