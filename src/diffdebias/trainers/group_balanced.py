"""Group-balanced resampling: cross-entropy over epochs drawn with replacement so that every group
is equally likely (each sample with probability proportional to 1 / |its group|), as SubpopBench's
ReSample and Group DRO's sampler; the recipe decides the groups (true cells, or pseudo-groups)."""

from __future__ import annotations

import torch

from .base import Trainer, TrainerContext


class GroupBalanced(Trainer):
    name = "group_balanced"
    needs = {"groups": "a group id per training sample from a recipe (resample_oracle, ddb1_resample)"}

    def __init__(self, ctx: TrainerContext):
        super().__init__(ctx)
        self.weights = balanced_weights(ctx.inputs.groups.long().cpu())

    def epoch_indices(self, gen):
        return balanced_epoch(self.weights, gen)


def balanced_weights(groups: torch.Tensor) -> torch.Tensor:
    """Each sample's sampling weight 1 / |its group|: every group is drawn equally often."""
    return (1.0 / torch.bincount(groups).float())[groups]


def balanced_epoch(weights: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One epoch of as many indices as samples, drawn with replacement by `weights`."""
    return torch.multinomial(weights, len(weights), replacement=True, generator=gen)
