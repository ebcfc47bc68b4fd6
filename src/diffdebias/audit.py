"""Does the generator reproduce the bias? (what DDB relies on)

Two judges are trained on the REAL training data (bias labels are used here for evaluation
only) and cached per dataset:
- a class judge: where the dataset declares a bias-invariant view (colour datasets: the maximum
  over RGB channels, which removes the tint), ERM on that view; otherwise Group DRO with the true
  groups (bias-balanced sampling);
- a bias judge: ERM predicting the bias value b.
On a synthetic set: `conditional_acc` = share of samples of class c that the class judge calls c;
`bias_alignment_rate` = share of samples of class c whose predicted bias is the class's majority
bias value in the real training data. Each judge's accuracy on the real test split is reported.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from .data.base import BiasedDataset, TensorSplit
from .diffusion.train import data_identity
from .engine.loop import Engine
from .errors import DatasetError
from .hparams import resolve_hparams
from .models import build_model
from .paths import cache_home
from .runtime import resolve_device
from .state import load_weights
from .trainers import ERM, GroupDRO, TrainerInputs


def channel_max_view(split: TensorSplit) -> TensorSplit:
    """Remove a colour tint: every channel becomes the per-pixel maximum over channels."""
    gray = split.images.amax(dim=1, keepdim=True).expand_as(split.images).contiguous()
    return TensorSplit(split.name, gray, split.y, split.b, split.spec)


VIEWS = {"channel_max": channel_max_view}


def _view(data: BiasedDataset) -> str | None:
    return data.info.get("bias_invariant_view")


def _judge_data(data: BiasedDataset, kind: str) -> BiasedDataset:
    if kind == "bias":
        splits = {k: s.with_labels(s.b, torch.full_like(s.b, -1)) for k, s in data.splits.items()}
        return replace(data, splits=splits, num_classes=data.num_bias, num_bias=0, class_names=data.bias_names, bias_names=None)
    view = _view(data)
    if view:
        return replace(data, splits={k: VIEWS[view](s) for k, s in data.splits.items()})
    return data


def train_judges(data: BiasedDataset, epochs: int = 10, quiet: bool = True) -> dict:
    """Train (or reuse from the cache) the class judge and the bias judge on real data."""
    if data.num_bias == 0 or not data.split("train").has_bias_labels:
        raise DatasetError(f"dataset '{data.name}' has no bias labels: the bias audit needs a dataset that has them")
    base = cache_home() / "judges" / (f"{data.name}-{data_identity(data)}" + ("" if epochs == 10 else f"-e{epochs}"))
    device = resolve_device("auto")
    judges = {}
    for kind in ("class", "bias"):
        jdata = _judge_data(data, kind)
        method = "erm" if kind == "bias" or _view(data) else "groupdro"
        hp = resolve_hparams(method, data.name, {"epochs": epochs, "selection": "val_avg"})
        engine = Engine(jdata, base / kind, seed=0, device=device, quiet=quiet, resume=True)
        if method == "erm":
            result = engine.train_stage("main", ERM, hp)
        else:  # the true (class, bias) cells of the real training data
            train = jdata.split("train")
            result = engine.train_stage("main", GroupDRO, hp, inputs=TrainerInputs(groups=train.y * jdata.num_bias + train.b))
        model = build_model(hp["model"], jdata.num_classes, jdata.spec).to(device)
        model.load_state_dict(load_weights(base / kind / "main.model.safetensors"))
        judges[kind] = {"model": model.eval(), "test_acc": result.selected["test"]["avg_acc"], "engine": engine, "data": jdata, "method": method}
    return judges


def audit_synthetic(synth: BiasedDataset, data: BiasedDataset, judges: dict | None = None) -> dict:
    """Conditional accuracy and bias alignment rate of a synthetic set against real-data judges."""
    judges = judges or train_judges(data)
    splits = [synth.split(s).with_spec(data.spec) for s in ("train", "val", "test")]
    images = torch.cat([s.images for s in splits])
    y = torch.cat([s.y for s in splits]).numpy()
    whole = TensorSplit("synthetic", images, y, np.full(len(y), -1), data.spec)
    class_view = VIEWS[_view(data)](whole) if _view(data) else whole
    cls_pred = judges["class"]["engine"].predict(judges["class"]["model"], class_view)
    bias_pred = judges["bias"]["engine"].predict(judges["bias"]["model"], whole)
    aligned_value = data.aligned_bias()
    per_class = {}
    for c in range(data.num_classes):
        m = y == c
        if m.any():
            per_class[str(c)] = {
                "conditional_acc": round(100 * float((cls_pred[m] == c).mean()), 2),
                "bias_alignment_rate": round(100 * float((bias_pred[m] == aligned_value[c]).mean()), 2),
            }
    return {
        "num_images": int(len(y)),
        "conditional_acc": round(100 * float((cls_pred == y).mean()), 2),
        "bias_alignment_rate": round(100 * float((bias_pred == aligned_value[y]).mean()), 2),
        "per_class": per_class,
        "class_judge": {"method": judges["class"]["method"], "view": _view(data), "real_test_acc": judges["class"]["test_acc"]},
        "bias_judge": {"real_test_acc": judges["bias"]["test_acc"]},
    }

