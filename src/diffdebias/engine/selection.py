"""Model-selection policies. They read validation metrics only: the test split never selects."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class Policy:
    name: str
    val_metric: str | None  # None: the last epoch
    uses_val_bias_labels: bool


POLICIES = {
    "last": Policy("last", None, False),
    "val_avg": Policy("val_avg", "avg_acc", False),
    "val_worst_class": Policy("val_worst_class", "worst_class_acc", False),
    "val_unbiased": Policy("val_unbiased", "unbiased_acc", True),
    "val_wga": Policy("val_wga", "wga", True),
    # mean accuracy over groups inferred without bias labels (DDB: the Bias Amplifier's errors)
    "val_pseudo_unbiased": Policy("val_pseudo_unbiased", "pseudo_unbiased_acc", False),
}


def get_policy(name: str) -> Policy:
    if name not in POLICIES:
        raise ConfigError(f"unknown selection policy '{name}'; valid: {', '.join(POLICIES)}")
    return POLICIES[name]


def select_epoch(history: list[dict], policy: str) -> dict:
    """The history row (one per evaluated epoch, with a 'val' dict) that `policy` selects.

    Ties go to the earliest epoch. Only ``row['val']`` is read.
    """
    pol = get_policy(policy)
    if not history:
        raise ConfigError("no evaluated epoch to select from")
    if pol.val_metric is None:
        return history[-1]
    scored = [(row["val"].get(pol.val_metric), i) for i, row in enumerate(history)]
    if any(score is None for score, _ in scored):
        raise ConfigError(f"policy '{policy}' needs val '{pol.val_metric}', which this dataset's validation split cannot provide; choose another --set selection=...")
    best_score = max(score for score, _ in scored)
    return history[min(i for score, i in scored if score == best_score)]
