"""Bias-conflicting candidates: per class, the training samples the biased classifier finds hardest."""

from __future__ import annotations

import torch

from ..errors import ConfigError


def default_k(ratio: float | None) -> int:
    """DiffuBias's K: 100 per class, 200 at the 5% ratio (and above)."""
    return 200 if ratio is not None and ratio >= 5 else 100


def top_k_per_class(losses: torch.Tensor, y: torch.Tensor, num_classes: int, k: int) -> torch.Tensor:
    """Indices of the `k` highest-loss samples of each class (all of a class if it has fewer),
    class by class, highest loss first; ties go to the lower index."""
    if k < 1:
        raise ConfigError(f"hyperparameter 'num_candidates': must be >= 1 (or 0 for the default), got {k}")
    out = []
    for c in range(num_classes):
        members = torch.nonzero(y == c).flatten()
        order = torch.sort(-losses[members], stable=True).indices[:k]
        out.append(members[order])
    return torch.cat(out)
