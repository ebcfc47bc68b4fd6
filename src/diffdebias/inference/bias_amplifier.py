"""The Bias Amplifier (BA) of Diffusing DeBias as a group inferrer.

A classifier trained only on images sampled from a class-conditional diffusion model of the
biased training set (or, for the paper's ablation, on the real training set), then frozen and run
on the real training images. Its per-sample loss is the bias score: the higher, the more likely
the sample is bias-conflicting; a sample is pseudo-conflicting when the BA misclassifies it (or,
with a threshold, when the BA's probability of the true class is below it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import WeightedRandomSampler

from ..data.base import Split, bias_conflicting
from ..errors import ConfigError
from ..records import BADiagnostics
from ..trainers.group_balanced import balanced_weights
from ..trainers.losses import per_sample_ce

GROUPINGS = ("pred", "binary")
WEIGHT_SCHEMES = ("group", "upweight")


@dataclass
class GroupInference:
    """Per-sample bias scores, pseudo-bias labels and pseudo-groups.

    grouping `pred` (the paper's): the BA's predicted class is the pseudo-bias label, groups are
    (class, pseudo-bias) cells, num_classes^2 of them; `binary`: class x {aligned, conflicting}.
    """

    scores: torch.Tensor  # BA cross-entropy on each sample
    preds: torch.Tensor  # the pseudo-bias label
    conflicting: torch.Tensor  # bool
    num_classes: int
    grouping: str = "pred"

    @property
    def num_groups(self) -> int:
        return self.num_classes * (self.num_classes if self.grouping == "pred" else 2)

    def groups(self, y: torch.Tensor) -> torch.Tensor:
        if self.grouping == "pred":
            return y.long() * self.num_classes + self.preds.long()
        return y.long() * 2 + self.conflicting.long()

    @property
    def error_set(self) -> torch.Tensor:
        """Indices of the pseudo-conflicting samples."""
        return torch.nonzero(self.conflicting).flatten()

    def weights(self, y: torch.Tensor, scheme: str = "group", lambda_up: float = 50.0) -> torch.Tensor:
        """Per-sample weights: `group` = 1 / size of the sample's pseudo-group (every group drawn
        equally often, Recipe I's balanced sampling); `upweight` = `lambda_up` for the error set and
        1 elsewhere (the error-set variant as weights). Normalised to mean 1."""
        if scheme == "group":
            w = balanced_weights(self.groups(y))
        elif scheme == "upweight":
            w = torch.where(self.conflicting, float(lambda_up), 1.0)
        else:
            raise ConfigError(f"weight scheme must be one of {', '.join(WEIGHT_SCHEMES)}, got {scheme!r}")
        return w * (len(w) / w.sum())

    def sampler(self, y: torch.Tensor, scheme: str = "group", lambda_up: float = 50.0, num_samples: int | None = None,
                generator: torch.Generator | None = None) -> WeightedRandomSampler:  # fmt: skip
        """A `WeightedRandomSampler` over the samples with `weights(y, scheme, lambda_up)`, drawing
        `num_samples` (default: as many as there are samples) with replacement."""
        w = self.weights(y, scheme, lambda_up)
        return WeightedRandomSampler(w.double(), num_samples or len(w), replacement=True, generator=generator)


def infer_groups(logits: torch.Tensor, y: torch.Tensor, threshold: float = 0.0, grouping: str = "pred") -> GroupInference:
    """Pseudo-conflicting: misclassified by the BA, or p(y) < threshold when threshold > 0."""
    if grouping not in GROUPINGS:
        raise ConfigError(f"ba_grouping must be one of {', '.join(GROUPINGS)}, got {grouping!r}")
    scores = per_sample_ce(logits, y)
    preds = logits.argmax(1)
    if threshold > 0:
        conflicting = torch.softmax(logits.float(), 1).gather(1, y[:, None]).squeeze(1) < threshold
    else:
        conflicting = preds != y
    return GroupInference(scores, preds, conflicting, logits.shape[1], grouping)


def diagnostics(inference: GroupInference, split: Split, aligned_value: np.ndarray) -> BADiagnostics:
    """How well the BA flags the truly bias-conflicting samples (bias labels: evaluation only)."""
    if not split.has_bias_labels:
        return BADiagnostics(available=False)
    truth = bias_conflicting(split.y.numpy(), split.b.numpy(), aligned_value)
    flag = inference.conflicting.numpy()
    tp = int((flag & truth).sum())
    auroc = round(float(roc_auc_score(truth, inference.scores.numpy())), 4) if 0 < truth.sum() < len(truth) else None
    return BADiagnostics(True, int(truth.sum()), int(flag.sum()), round(100 * tp / max(int(flag.sum()), 1), 2),
                         round(100 * tp / max(int(truth.sum()), 1), 2), auroc)  # fmt: skip
