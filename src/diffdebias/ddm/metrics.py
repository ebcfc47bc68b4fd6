"""Fairness and quality metrics for generators (exact definitions).

- ``fd`` (Fairness Discrepancy, Choi et al. 2020): || u - p ||_2 with u the uniform vector over
  the K attribute values and p_k the share of samples the attribute classifier assigns to value
  k (the mean of its one-hot predictions). 0 is perfectly balanced; K = 2 at 100/0 gives sqrt(2)/2.
- ``proportions``: p_k with percentile bootstrap confidence intervals (samples resampled with
  replacement, seeded).
- ``spd`` (Statistical Parity Difference) in the conditional scenario, where the generator is
  asked for condition c (a class or a prompt) and A_hat is the classifier's attribute prediction:
  SPD = max over attribute values k and pairs of conditions (a, b) of
  |P(A_hat = k | c = a) - P(A_hat = k | c = b)|. With two conditions and a binary attribute this
  is |P(A_hat = 1 | c = a) - P(A_hat = 1 | c = b)|. 0: the attribute does not depend on the condition.
- ``frechet_distance``: ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)) between Gaussians
  fitted to two feature sets (unbiased covariances), as in FID; which features are used is
  named by the caller (`fd_inclf`: an in-domain classifier's; `fid`: Inception's).
"""

from __future__ import annotations

import warnings
from itertools import combinations

import numpy as np
from scipy import linalg

from ..errors import ConfigError


def proportions(pred: np.ndarray, num_groups: int) -> np.ndarray:
    """Share of predictions equal to each attribute value (mean one-hot)."""
    pred = np.asarray(pred, dtype=np.int64)
    if pred.size == 0:
        raise ConfigError("fairness metrics need at least one sample")
    return np.bincount(pred, minlength=num_groups)[:num_groups] / pred.size


def fairness_discrepancy(pred: np.ndarray, num_groups: int) -> float:
    """FD = || uniform - mean one-hot(pred) ||_2."""
    return float(np.linalg.norm(np.full(num_groups, 1.0 / num_groups) - proportions(pred, num_groups)))


def bootstrap_proportions(pred: np.ndarray, num_groups: int, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Proportions, FD and their percentile bootstrap intervals."""
    pred = np.asarray(pred, dtype=np.int64)
    rng = np.random.default_rng(seed)
    draws = pred[rng.integers(0, len(pred), size=(n_boot, len(pred)))]
    props = np.stack([np.bincount(d, minlength=num_groups)[:num_groups] for d in draws]) / len(pred)
    fds = np.linalg.norm(props - 1.0 / num_groups, axis=1)
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return {
        "proportions": proportions(pred, num_groups).round(4).tolist(),
        "proportions_ci": [[round(float(np.percentile(props[:, k], lo)), 4), round(float(np.percentile(props[:, k], hi)), 4)] for k in range(num_groups)],
        "fd": round(fairness_discrepancy(pred, num_groups), 4),
        "fd_ci": [round(float(np.percentile(fds, lo)), 4), round(float(np.percentile(fds, hi)), 4)],
        "ci_level": level,
        "n_boot": n_boot,
    }


def statistical_parity_difference(pred: np.ndarray, conditions: np.ndarray, num_groups: int) -> float:
    """max_k max_(a, b) |P(pred = k | c = a) - P(pred = k | c = b)| over the conditions present."""
    pred, conditions = np.asarray(pred), np.asarray(conditions)
    present = np.unique(conditions)
    if len(present) < 2:
        raise ConfigError("SPD needs samples of at least two conditions (e.g. labels.npy with two classes)")
    p = {c: proportions(pred[conditions == c], num_groups) for c in present}
    return float(max(np.abs(p[a] - p[b]).max() for a, b in combinations(present, 2)))


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two (N, D) feature sets (N >= 2 each)."""
    a, b = np.asarray(feats_a, dtype=np.float64), np.asarray(feats_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ConfigError(f"Frechet distance needs two (N >= 2, D) feature sets of equal D, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():  # a singular product is handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s_a @ s_b)
    if not np.isfinite(covmean).all():  # singular product: regularise as pytorch-fid does
        eps = np.eye(len(s_a)) * 1e-6
        covmean = linalg.sqrtm((s_a + eps) @ (s_b + eps))
    covmean = np.real(covmean)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean))
