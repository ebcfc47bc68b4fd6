"""Group labels for DDM: the given attribute, or groups inferred without it.

Inference (`groups=inferred`): within each condition (class) separately, k-means with k groups
(scikit-learn, 10 restarts, seeded) on the training images average-pooled to 8 x 8 per channel
and flattened; inside a condition the clusters are numbered by size, largest first, so group 0
is the condition's majority mode and group k-1 its rarest. Where the true attribute is known it is
used only to report the agreement: per condition, the best one-to-one matching of clusters to
attribute values (Hungarian), pooled over conditions.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans

from ..data.base import BiasedDataset, Split
from ..errors import ConfigError, DatasetError

SOURCES = ("given", "inferred")


def pooled_features(split: Split, pool: int = 8, batch: int = 2048) -> np.ndarray:
    """Images average-pooled to pool x pool per channel, flattened (N, C * pool * pool)."""
    out = []
    for start in range(0, len(split), batch):
        x = split.batch(torch.arange(start, min(start + batch, len(split))))[0]
        out.append(F.adaptive_avg_pool2d(x, pool).flatten(1).numpy())
    return np.concatenate(out).astype(np.float64)


def infer_groups(features: np.ndarray, conditions: np.ndarray, num_groups: int, seed: int) -> np.ndarray:
    """Per-condition k-means; clusters numbered by size (largest = 0) inside each condition."""
    groups = np.zeros(len(features), dtype=np.int64)
    for c in np.unique(conditions):
        members = np.flatnonzero(conditions == c)
        if len(members) < num_groups:
            raise DatasetError(f"condition {c} has {len(members)} training samples, fewer than num_groups = {num_groups}")
        labels = KMeans(num_groups, n_init=10, random_state=seed).fit_predict(features[members])
        by_size = np.argsort(-np.bincount(labels, minlength=num_groups), kind="stable")
        rank = np.empty(num_groups, dtype=np.int64)
        rank[by_size] = np.arange(num_groups)
        groups[members] = rank[labels]
    return groups


def agreement(groups: np.ndarray, truth: np.ndarray, conditions: np.ndarray) -> dict:
    """Share of samples whose group matches the true attribute under the best per-condition matching."""
    matched, per_condition = 0, {}
    for c in np.unique(conditions):
        m = conditions == c
        g, a = groups[m], truth[m]
        table = np.zeros((g.max() + 1, a.max() + 1), dtype=np.int64)
        np.add.at(table, (g, a), 1)
        rows, cols = linear_sum_assignment(-table)
        hits = int(table[rows, cols].sum())
        matched += hits
        per_condition[str(int(c))] = round(hits / int(m.sum()), 4)
    return {"agreement": round(matched / len(groups), 4), "per_condition": per_condition}


def resolve_groups(data: BiasedDataset, source: str, num_groups: int, seed: int) -> tuple[torch.Tensor, dict]:
    """Group label of every training sample and a report (method, sizes, agreement where known)."""
    train = data.split("train")
    if source not in SOURCES:
        raise ConfigError(f"DDM setting 'groups' must be one of {', '.join(SOURCES)}, got {source!r}")
    if source == "given":
        if not train.has_bias_labels:
            raise DatasetError(f"dataset '{data.name}': the training split has no attribute labels (b = -1); use --set groups=inferred")
        k = num_groups or data.num_bias
        if k < int(train.b.max()) + 1:
            raise ConfigError(f"DDM setting 'num_groups' = {k} is below the dataset's {data.num_bias} attribute values; leave it 0")
        g = train.b.clone()
        report = {"source": "given", "num_groups": k}
    else:
        k = num_groups or 2
        if k < 2:
            raise ConfigError(f"DDM setting 'num_groups' must be >= 2 for inferred groups, got {k}")
        g = torch.from_numpy(infer_groups(pooled_features(train), train.y.numpy(), k, seed))
        report = {"source": "inferred", "method": "per-condition k-means on 8x8 pooled pixels, clusters by size", "num_groups": k}
        if train.has_bias_labels:
            report.update(agreement(g.numpy(), train.b.numpy(), train.y.numpy()))
    report["sizes"] = np.bincount(g.numpy(), minlength=k).tolist()
    return g.long(), report
