"""Upsampling: cross-entropy over an epoch of given training indices with repeats (JTT's second
stage, DDB Recipe I's error-set variant); the recipe decides which samples are repeated."""

from __future__ import annotations

import torch

from .base import Trainer, TrainerContext


class Upsample(Trainer):
    name = "upsample"
    needs = {"indices": "the upsampled training indices from a recipe (jtt, ddb1_errset)"}

    def __init__(self, ctx: TrainerContext):
        super().__init__(ctx)
        self.indices = ctx.inputs.indices.long().cpu()

    def epoch_size(self) -> int:
        return len(self.indices)

    def epoch_indices(self, gen):
        return self.indices[torch.randperm(len(self.indices), generator=gen)]


def upsample(n: int, error_set: torch.Tensor, lambda_up: int) -> torch.Tensor:
    """All n training indices, with those of the error set repeated lambda_up times in total."""
    return torch.cat([torch.arange(n), error_set.repeat(lambda_up - 1)])
