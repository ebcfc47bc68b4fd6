"""Group DRO (Sagawa et al. 2020), online algorithm of the official code, over given groups.

Which groups is the recipe's business: the true (y, b) cells (the oracle), the classes, or DDB's
Bias Amplifier pseudo-groups. The trainer only needs one group id per training sample.
"""

from __future__ import annotations

import torch

from .base import Trainer, TrainerContext
from .group_balanced import balanced_epoch, balanced_weights
from .losses import per_sample_ce


class GroupDRO(Trainer):
    name = "groupdro"
    needs = {"groups": "a group id per training sample from a recipe (groupdro with groups=oracle|class, ddb1)"}

    def __init__(self, ctx: TrainerContext):
        super().__init__(ctx)
        self.groups = ctx.inputs.groups.long().cpu()
        self.num_groups = ctx.inputs.num_groups or int(self.groups.max()) + 1
        self.counts = torch.bincount(self.groups, minlength=self.num_groups).float()
        self.adj = ctx.hp["group_adj"] / self.counts.clamp_min(1).sqrt()
        self.q = torch.ones(self.num_groups) / self.num_groups

    def epoch_indices(self, gen):
        if not self.ctx.hp["balanced_sampling"]:
            return super().epoch_indices(gen)
        return balanced_epoch(balanced_weights(self.groups), gen)

    def loss(self, x, y, idx):
        losses = per_sample_ce(self.model(x), y)
        g = self.groups[idx.cpu()].to(losses.device)
        sums = torch.zeros(self.num_groups, device=losses.device).index_add(0, g, losses)
        counts = torch.zeros(self.num_groups, device=losses.device).index_add(0, g, torch.ones_like(losses))
        dist = self.ctx.dist
        counts = dist.sum(counts)  # of the global batch: q is updated from its group losses on every process
        group_loss = sums / counts.clamp_min(1)
        adjusted = (dist.sum(sums.detach()) / counts.clamp_min(1)).cpu() + self.adj * (counts.cpu() > 0)
        self.q = self.q * torch.exp(self.ctx.hp["eta"] * adjusted)
        self.q = self.q / self.q.sum()
        loss = group_loss @ self.q.to(losses.device)
        if dist.active:  # this block's share of the global loss, as a mean over the block (see Trainer)
            loss = loss * counts.sum() / len(y)
        return loss, {"q_max": float(self.q.max()), **{f"group_weight/{g}": w for g, w in enumerate(self.q.tolist())}}

    def extra_state(self):
        return {"q": self.q, "groups": self.groups}

    def load_extra_state(self, state):
        self.q = state["q"].clone()
