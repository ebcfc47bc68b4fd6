"""Learning from Failure (Nam et al. 2020), as in its official code.

A biased model trained with GCE and a debiased model trained with CE weighted per sample by
W = L_b / (L_b + L_d), where L are per-sample loss EMAs (momentum `ema`) normalised by their
class-wise maximum. Both models train together.

Given `bias_losses` (a frozen biased model's per-sample losses, DDB Recipe II's Bias Amplifier),
no biased model is trained: its EMA is set to those constants at the start, so the class-wise
maxima are exact from the first step; the debiased model's EMA is LfF's.
"""

from __future__ import annotations

import torch

from ..distributed import Dist
from .base import Trainer, TrainerContext
from .losses import per_sample_ce, per_sample_gce


class LossEMA:
    """Per-sample exponential moving average of a loss; the first update sets the value."""

    def __init__(self, num: int, labels: torch.Tensor, num_classes: int, momentum: float):
        self.values = torch.zeros(num)
        self.updated = torch.zeros(num)
        self.labels = labels.cpu()
        self.num_classes = num_classes
        self.momentum = momentum

    def update(self, loss: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        idx = idx.cpu()
        m = self.momentum
        self.values[idx] = m * self.values[idx] + (1 - m * self.updated[idx]) * loss.detach().float().cpu()
        self.updated[idx] = 1.0
        return self.values[idx].clone()

    def class_max(self) -> torch.Tensor:
        """Max EMA per class over all training samples."""
        out = torch.zeros(self.num_classes)
        return out.scatter_reduce(0, self.labels, self.values, reduce="amax", include_self=True)

    def state(self) -> dict:
        return {"values": self.values, "updated": self.updated}

    def load(self, state: dict) -> None:
        self.values.copy_(state["values"])
        self.updated.copy_(state["updated"])


def relative_difficulty(ema_b: LossEMA, ema_d: LossEMA, loss_b, loss_d, y, idx, dist: Dist) -> torch.Tensor:
    """LfF's W = L_b / (L_b + L_d) from class-max-normalised EMAs (on the CPU, detached). The EMAs
    are updated with the whole global batch (gathered over processes), W is this block's."""
    all_idx = dist.gather(idx.cpu())
    ema_b.update(dist.gather(loss_b.detach().float()), all_idx)
    ema_d.update(dist.gather(loss_d.detach().float()), all_idx)
    lb, ld = ema_b.values[idx.cpu()], ema_d.values[idx.cpu()]
    y_cpu = y.cpu()
    lb = lb / ema_b.class_max()[y_cpu].clamp_min(1e-8)
    ld = ld / ema_d.class_max()[y_cpu].clamp_min(1e-8)
    return lb / (lb + ld + 1e-8)


class LfF(Trainer):
    name = "lff"

    def __init__(self, ctx: TrainerContext):
        super().__init__(ctx)  # self.model is the debiased model
        labels, given = ctx.train.y, ctx.inputs.bias_losses
        self.ema_b = LossEMA(ctx.num_train, labels, ctx.data.num_classes, ctx.hp["ema"])
        self.ema_d = LossEMA(ctx.num_train, labels, ctx.data.num_classes, ctx.hp["ema"])
        self.biased = None
        if given is None:
            self.biased = ctx.new_model()
            self.biased_optimizer = ctx.new_optimizer(self.biased.parameters())
        else:  # a frozen biased model: its loss on each sample is a constant
            self.ema_b.values.copy_(given)
            self.ema_b.updated.fill_(1.0)

    def modules(self):
        return {"model": self.model} | ({"biased": self.biased} if self.biased is not None else {})

    def optimizers(self):
        return {"model": self.optimizer} | ({"biased": self.biased_optimizer} if self.biased is not None else {})

    def loss(self, x, y, idx):
        logit_d = self.model(x)
        ce_d = per_sample_ce(logit_d, y)
        if self.biased is None:
            w = relative_difficulty(self.ema_b, self.ema_d, self.ema_b.values[idx.cpu()], ce_d, y, idx, self.ctx.dist).to(x.device)
            return (ce_d * w).mean(), {"w_mean": float(w.mean())}
        logit_b = self.biased(x)
        w = relative_difficulty(self.ema_b, self.ema_d, per_sample_ce(logit_b, y), ce_d, y, idx, self.ctx.dist).to(x.device)
        loss_b = per_sample_gce(logit_b, y, self.ctx.hp["q"]).mean()
        return loss_b + (ce_d * w).mean(), {"w_mean": float(w.mean())}

    def extra_state(self):
        return {"ema_b": self.ema_b.state(), "ema_d": self.ema_d.state()}

    def load_extra_state(self, state):
        self.ema_b.load(state["ema_b"])
        self.ema_d.load(state["ema_d"])
