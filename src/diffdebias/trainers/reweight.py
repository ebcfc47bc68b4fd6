"""Per-sample loss weights: cross-entropy weighted by a recipe's fixed weight for each training
sample, over ordinary epochs (JTT in SubpopBench's form: the error set's loss x lambda_up)."""

from __future__ import annotations

from .base import Trainer, TrainerContext
from .losses import per_sample_ce


class Reweight(Trainer):
    name = "reweight"
    needs = {"loss_weights": "a loss weight per training sample from a recipe (jtt_weighted, ddb1_errset_weighted)"}

    def __init__(self, ctx: TrainerContext):
        super().__init__(ctx)
        self.loss_weights = ctx.inputs.loss_weights.float().cpu()

    def loss(self, x, y, idx):
        w = self.loss_weights[idx.cpu()].to(x.device)
        return (per_sample_ce(self.model(x), y) * w).mean(), {"weight_mean": float(w.mean())}
