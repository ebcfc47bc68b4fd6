"""Group DRO (Sagawa et al. 2020), online algorithm of the official code.

Groups come from the caller: the true (y, b) cells make it the ORACLE reference (it uses bias
labels; `groups=oracle`), `groups=class` gives class-level DRO without bias labels, and other
components (DDB's Bias Amplifier) pass pseudo-groups through the method context.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .base import Method, MethodContext, per_sample_ce

GROUP_SOURCES = ("oracle", "class", "given")


def groups_from_labels(source: str, y: torch.Tensor, b: torch.Tensor | None, num_bias: int) -> torch.Tensor:
    if source == "oracle":
        if b is None or (b < 0).any():
            raise ConfigError("groups=oracle needs bias labels on every training sample; this dataset has none")
        return y * num_bias + b
    if source == "class":
        return y.clone()
    raise ConfigError(f"groups={source!r}: valid sources are {', '.join(GROUP_SOURCES)} (given: passed by another component)")


class GroupDRO(Method):
    name = "groupdro"

    @classmethod
    def needs_bias_labels(cls, hp: dict) -> bool:
        return hp.get("groups") == "oracle"

    def __init__(self, ctx: MethodContext):
        super().__init__(ctx)
        if ctx.groups is not None:
            self.set_groups(ctx.groups)
        elif ctx.hp.get("groups", "given") != "given":
            self.set_groups(groups_from_labels(ctx.hp["groups"], ctx.data.split("train").y, ctx.train_b, ctx.data.num_bias))

    def prepare(self, engine) -> None:
        if not hasattr(self, "groups"):
            raise ConfigError("groups=given: no groups were passed; use groups=oracle or class, or a recipe that infers them (ddb1)")

    def set_groups(self, groups: torch.Tensor, num_groups: int | None = None) -> None:
        """Group id of every training sample (from labels, or from a group inferrer)."""
        self.groups = groups.long().cpu()
        self.num_groups = num_groups or int(self.groups.max()) + 1
        self.counts = torch.bincount(self.groups, minlength=self.num_groups).float()
        self.adj = self.ctx.hp["group_adj"] / self.counts.clamp_min(1).sqrt()
        self.q = torch.ones(self.num_groups) / self.num_groups

    def epoch_indices(self, gen):
        if not self.ctx.hp["balanced_sampling"]:
            return super().epoch_indices(gen)
        weights = (1.0 / self.counts.clamp_min(1))[self.groups]
        return torch.multinomial(weights, len(self.groups), replacement=True, generator=gen)

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
        if dist.active:  # this block's share of the global loss, as a mean over the block (see Method)
            loss = loss * counts.sum() / len(y)
        return loss, {"q_max": float(self.q.max())}

    def extra_state(self):
        return {"q": self.q, "groups": self.groups}

    def load_extra_state(self, state):
        self.q = state["q"].clone()
