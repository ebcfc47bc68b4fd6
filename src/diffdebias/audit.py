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

Diversity (no judge, no bias label): per class, on up to DIVERSITY_SAMPLES images of each set in
pixel space, `spread` = mean pairwise distance of the synthetic images / that of the real training
images (1: as varied as the real class), and the k-NN manifold `precision` (share of synthetic images
inside the real images' k-NN balls) and `recall` (share of real images inside the synthetic ones'),
Kynkaanniemi et al. 2019, k = KNN.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from .data.base import BiasedDataset, TensorSplit
from .diffusion.train import data_identity
from .engine.loop import Engine
from .errors import DatasetError
from .hparams import resolve_hparams
from .models import build_model
from .paths import cache_home
from .runtime import resolve_device
from .state import load_weights, stage_weights
from .trainers import ERM, GroupDRO, TrainerInputs


DIVERSITY_SAMPLES = 300  # per class and set
KNN = 3


@dataclass
class Judge:
    """A classifier trained on the real data, and its average accuracy on the real test split."""

    model: torch.nn.Module
    engine: Engine
    method: str  # "erm" | "groupdro"
    test_acc: float

    def predict(self, split: TensorSplit) -> np.ndarray:
        return self.engine.predict(self.model, split)

    def logits(self, split: TensorSplit) -> torch.Tensor:
        return self.engine.logits(self.model, split)


@dataclass
class Judges:
    """The class judge (on the dataset's bias-invariant view where it declares one) and the bias judge."""

    label: Judge
    bias: Judge


def manifold_coverage(ref: torch.Tensor, query: torch.Tensor, k: int = KNN) -> float:
    """Share of `query` rows inside the union of the k-NN balls of `ref`'s rows (ball radius: the
    distance of a row of `ref` to its k-th nearest other row)."""
    if len(ref) <= k or not len(query):
        return float("nan")
    radii = torch.cdist(ref, ref).kthvalue(k + 1, dim=1).values  # +1: each row is its own nearest neighbour
    return float((torch.cdist(query, ref) <= radii).any(dim=1).float().mean())


def mean_pairwise_distance(x: torch.Tensor) -> float:
    n = len(x)
    return float(torch.cdist(x, x).sum() / (n * (n - 1))) if n > 1 else float("nan")


def diversity(synth: torch.Tensor, synth_y: np.ndarray, real: TensorSplit, num_classes: int, seed: int = 0) -> dict:
    """Spread, k-NN precision and recall of uint8 synthetic images against the real split `real`, per
    class (up to DIVERSITY_SAMPLES of each) and as means over classes."""
    gen = torch.Generator().manual_seed(seed)
    real_y = real.y.numpy()
    per_class = {}
    for c in range(num_classes):
        s_idx, r_idx = np.flatnonzero(synth_y == c), np.flatnonzero(real_y == c)
        if len(s_idx) < 2 or len(r_idx) < 2:
            continue
        s_idx = s_idx[torch.randperm(len(s_idx), generator=gen)[:DIVERSITY_SAMPLES].numpy()]
        r_idx = r_idx[torch.randperm(len(r_idx), generator=gen)[:DIVERSITY_SAMPLES].numpy()]
        r = torch.stack([real.load_uint8(int(i)) for i in r_idx]).float() / 255
        x = synth[torch.as_tensor(s_idx)].float() / 255
        if x.shape[1:] != r.shape[1:]:
            x = F.interpolate(x, size=r.shape[-2:], mode="bilinear", antialias=True, align_corners=False)
        x, r = x.flatten(1), r.flatten(1)
        per_class[str(c)] = {"spread": round(mean_pairwise_distance(x) / mean_pairwise_distance(r), 4),
                             "precision": round(100 * manifold_coverage(r, x), 2), "recall": round(100 * manifold_coverage(x, r), 2)}  # fmt: skip
    means = {k: round(float(np.mean([v[k] for v in per_class.values()])), 4 if k == "spread" else 2) for k in ("spread", "precision", "recall")}
    return {**means, "k": KNN, "per_class": per_class}


def diversity_summary(div: dict) -> str:
    """'spread S, k-NN precision P%, recall R%' of `diversity`'s means."""
    return f"spread {div['spread']:.2f}, k-NN precision {div['precision']:.1f}%, recall {div['recall']:.1f}%"


def audit_summary(audit: dict) -> str:
    """One line of `audit_synthetic`'s report: alignment, the judges' real test accuracy and the
    diversity (left out of an audit made before diversity was measured)."""
    line = (f"conditional accuracy {audit['conditional_acc']:.1f}%, bias alignment rate {audit['bias_alignment_rate']:.1f}% "
            f"({audit['num_images']} images; judges on real test: class {audit['class_judge']['real_test_acc']:.1f}%, "
            f"bias {audit['bias_judge']['real_test_acc']:.1f}%)")  # fmt: skip
    return f"{line}; {diversity_summary(audit['diversity'])}" if audit.get("diversity") else line


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


def train_judges(data: BiasedDataset, epochs: int = 10, quiet: bool = True) -> Judges:
    """Train (or reuse from the cache) the class judge and the bias judge on real data."""
    if data.num_bias == 0 or not data.split("train").has_bias_labels:
        raise DatasetError(f"dataset '{data.name}' has no bias labels: the bias audit needs a dataset that has them")
    base = cache_home() / "judges" / (f"{data.name}-{data_identity(data)}" + ("" if epochs == 10 else f"-e{epochs}"))
    device = resolve_device("auto")
    judges: dict[str, Judge] = {}
    for kind in ("class", "bias"):  # also the cache's folder names
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
        model.load_state_dict(load_weights(stage_weights(base / kind, "main")))
        judges[kind] = Judge(model.eval(), engine, method, result.selected["test"]["avg_acc"])
    return Judges(judges["class"], judges["bias"])


def audit_synthetic(synth: BiasedDataset, data: BiasedDataset, judges: Judges | None = None) -> dict:
    """Conditional accuracy and bias alignment rate of a synthetic set against real-data judges, and
    its diversity against the real training images."""
    judges = judges or train_judges(data)
    splits = [synth.split(s).with_spec(data.spec) for s in ("train", "val", "test")]
    images = torch.cat([s.images for s in splits])
    y = torch.cat([s.y for s in splits]).numpy()
    whole = TensorSplit("synthetic", images, y, np.full(len(y), -1), data.spec)
    class_view = VIEWS[_view(data)](whole) if _view(data) else whole
    cls_pred = judges.label.predict(class_view)
    bias_pred = judges.bias.predict(whole)
    aligned_value = data.aligned_bias()
    per_class = {}
    for c in range(data.num_classes):
        m = y == c
        if m.any():
            per_class[str(c)] = {
                "conditional_acc": round(100 * float((cls_pred[m] == c).mean()), 2),
                "bias_alignment_rate": round(100 * float((bias_pred[m] == aligned_value[c]).mean()), 2),
            }
    div = diversity(images, y, data.split("train"), data.num_classes)
    for c, d in div.pop("per_class").items():
        per_class.setdefault(c, {}).update({f"diversity_{k}": v for k, v in d.items()})
    return {
        "num_images": int(len(y)),
        "conditional_acc": round(100 * float((cls_pred == y).mean()), 2),
        "bias_alignment_rate": round(100 * float((bias_pred == aligned_value[y]).mean()), 2),
        "diversity": div,
        "per_class": per_class,
        "class_judge": {"method": judges.label.method, "view": _view(data), "real_test_acc": judges.label.test_acc},
        "bias_judge": {"real_test_acc": judges.bias.test_acc},
    }

