"""Group-balanced resampling: cross-entropy over epochs drawn with replacement so that every group
is equally likely (each sample with probability proportional to 1 / |its group|), as SubpopBench's
ReSample and Group DRO's sampler; the recipe decides the groups (true cells, or pseudo-groups)."""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .base import Trainer, TrainerContext


class GroupBalanced(Trainer):
    name = "group_balanced"

    def __init__(self, ctx: TrainerContext):
        if ctx.inputs.groups is None:
            raise ConfigError("group-balanced resampling needs a group id per training sample from a recipe (resample_oracle, ddb1_resample)")
        super().__init__(ctx)
        groups = ctx.inputs.groups.long().cpu()
        counts = torch.bincount(groups).float()
        self.weights = (1.0 / counts)[groups]

    def epoch_indices(self, gen):
        return torch.multinomial(self.weights, len(self.weights), replacement=True, generator=gen)
