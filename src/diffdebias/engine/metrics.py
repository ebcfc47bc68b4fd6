"""Classification metrics for biased data, by their exact names (METHODS.md section 6).

- ``avg_acc``: plain accuracy.
- ``unbiased_acc``: mean of the per-(y, b)-cell accuracies over the non-empty cells.
- ``wga``: worst (y, b) cell accuracy over the non-empty cells.
- ``aligned_acc`` / ``conflicting_acc``: accuracy on samples whose bias value is / is not the
  majority value of their class in the TRAINING split.
- ``avg_acc_train_weighted``: cell accuracies weighted by the training proportions of the cells.
- ``worst_class_acc``: the lowest per-class accuracy (needs no bias labels).
- ``group_acc``: the per-cell table as {"y,b": accuracy or None for empty cells}.
- ``balanced_acc``: the mean per-class recall over the classes present (needs no bias labels).
- ``macro_f1`` and ``per_class``: {"precision", "recall", "f1"} lists, one value per class
  (torchmetrics; a class never predicted nor present scores 0).
- ``ece``: expected calibration error of the top-class confidence, 15 equal-width bins
  (torchmetrics' l1 calibration error), in percent points; only where probabilities are given.
- for datasets whose bias combines factors (UrbanCars: background and co-occurring object),
  ``<factors>_gap``: accuracy on the samples where exactly those factors conflict with y (the
  others aligned) minus the in-distribution accuracy ``avg_acc_train_weighted`` (Li et al., LLE):
  ``bg_gap``, ``co_occur_obj_gap``, ``bg+co_occur_obj_gap``.
Metrics that need bias labels are None where the evaluated split has none.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import torch
from torchmetrics.functional.classification import (
    multiclass_calibration_error,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

from ..data.base import UNKNOWN_BIAS, bias_conflicting, majority_bias

METRIC_NAMES = ("avg_acc", "unbiased_acc", "wga", "aligned_acc", "conflicting_acc", "avg_acc_train_weighted", "worst_class_acc",
                "balanced_acc", "macro_f1", "ece")
ECE_BINS = 15


def classification_metrics(
    preds: np.ndarray,
    y: np.ndarray,
    b: np.ndarray,
    num_classes: int,
    num_bias: int,
    train_counts: np.ndarray | None = None,
    factors: dict | None = None,
    probs: np.ndarray | None = None,
) -> dict:
    """All metrics for one split. `train_counts` is the (num_classes, num_bias) training cell table;
    `factors` describes a bias made of several factors (dataset info 'bias_factors'); `probs`
    (N x num_classes softmax outputs) adds the expected calibration error."""
    preds, y, b = (np.asarray(a, dtype=np.int64) for a in (preds, y, b))
    correct = preds == y
    out: dict = {name: None for name in METRIC_NAMES}
    out["avg_acc"] = _pct(correct.mean()) if len(y) else None
    per_class = [correct[y == c].mean() for c in range(num_classes) if (y == c).any()]
    out["worst_class_acc"] = _pct(min(per_class)) if per_class else None
    out["balanced_acc"] = _pct(np.mean(per_class)) if per_class else None
    if len(y):
        out.update(class_scores(preds, y, num_classes))
    if probs is not None and len(y):
        ece = multiclass_calibration_error(torch.as_tensor(probs, dtype=torch.float32), torch.as_tensor(y), num_classes, n_bins=ECE_BINS, norm="l1")
        out["ece"] = _pct(float(ece))
    out["group_acc"] = {}
    if num_bias == 0 or len(y) == 0 or (b == UNKNOWN_BIAS).any():
        return out
    cell_acc = np.full((num_classes, num_bias), np.nan)
    for c in range(num_classes):
        for v in range(num_bias):
            mask = (y == c) & (b == v)
            if mask.any():
                cell_acc[c, v] = correct[mask].mean()
            out["group_acc"][f"{c},{v}"] = None if np.isnan(cell_acc[c, v]) else _pct(cell_acc[c, v])
    filled = ~np.isnan(cell_acc)
    out["unbiased_acc"] = _pct(cell_acc[filled].mean())
    out["wga"] = _pct(cell_acc[filled].min())
    if train_counts is not None:
        counts = np.asarray(train_counts, dtype=np.float64)
        aligned = ~bias_conflicting(y, b, majority_bias(counts))
        out["aligned_acc"] = _pct(correct[aligned].mean()) if aligned.any() else None
        out["conflicting_acc"] = _pct(correct[~aligned].mean()) if (~aligned).any() else None
        weights = np.where(filled, counts, 0.0)
        if weights.sum() > 0:
            out["avg_acc_train_weighted"] = _pct((np.nan_to_num(cell_acc) * weights).sum() / weights.sum())
    if factors and out["avg_acc_train_weighted"] is not None:
        out.update(factor_gaps(correct, y, b, factors, out["avg_acc_train_weighted"]))
    return out


def class_scores(preds: np.ndarray, y: np.ndarray, num_classes: int) -> dict:
    """`per_class` precision, recall and F1 (lists, in percent) and their `macro_f1`."""
    p, t = torch.as_tensor(preds), torch.as_tensor(y)
    scores = {name: fn(p, t, num_classes, average="none") for name, fn in
              (("precision", multiclass_precision), ("recall", multiclass_recall), ("f1", multiclass_f1_score))}  # fmt: skip
    return {"macro_f1": _pct(float(scores["f1"].mean())), "per_class": {k: [_pct(float(v)) for v in vs] for k, vs in scores.items()}}


def pseudo_group_metrics(preds: np.ndarray, y: np.ndarray, groups: np.ndarray) -> dict:
    """`pseudo_unbiased_acc` / `pseudo_wga`: mean / worst accuracy over the non-empty cells of
    INFERRED groups (e.g. DDB's Bias Amplifier on the validation images): no bias labels used."""
    correct = np.asarray(preds) == np.asarray(y)
    groups = np.asarray(groups)
    accs = [correct[groups == g].mean() for g in np.unique(groups)]
    return {"pseudo_unbiased_acc": _pct(np.mean(accs)), "pseudo_wga": _pct(np.min(accs))}


def factor_gaps(correct: np.ndarray, y: np.ndarray, b: np.ndarray, factors: dict, reference: float) -> dict:
    """Accuracy where exactly a subset of bias factors conflicts with y, minus `reference`."""
    aligned = {name: ((b // f["divisor"]) % f["modulus"]) == y for name, f in factors.items()}
    out = {}
    for r in range(1, len(aligned) + 1):
        for combo in combinations(aligned, r):
            mask = np.ones_like(y, dtype=bool)
            for name, is_aligned in aligned.items():
                mask &= ~is_aligned if name in combo else is_aligned
            out["+".join(combo) + "_gap"] = round(_pct(correct[mask].mean()) - reference, 4) if mask.any() else None
    return out


def _pct(value: float) -> float:
    return round(float(value) * 100.0, 4)
