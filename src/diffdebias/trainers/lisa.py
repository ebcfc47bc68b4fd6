"""LISA (Yao et al. 2022, "Improving Out-of-Distribution Robustness via Selective Augmentation"):
group-balanced batches whose samples are each mixed (mixup, lambda ~ Beta(alpha, alpha)) with a
partner chosen selectively: with probability `lisa_p_intra_label` one of the same class and another
bias value (the mix keeps the class and blurs the bias), otherwise one of the same bias value and
another class (the mix keeps the bias and blends the classes, so the bias cannot tell them apart).
The bias values are the recipe's: the true ones (the oracle) or the Bias Amplifier's pseudo-bias
labels. A sample with no such partner is left unmixed."""

from __future__ import annotations

import torch

from .base import TrainerContext
from .group_balanced import GroupBalanced
from .losses import per_sample_ce


class LISA(GroupBalanced):
    name = "lisa"
    needs = {**GroupBalanced.needs, "bias": "a (pseudo-)bias value per training sample from a recipe (lisa_oracle, ddb1_lisa)"}

    def __init__(self, ctx: TrainerContext):
        super().__init__(ctx)
        y, b = ctx.train.y.long().cpu(), ctx.inputs.bias.long().cpu()
        cells = sorted({(int(c), int(v)) for c, v in zip(y.tolist(), b.tolist())})
        self.members = {k: torch.nonzero((y == k[0]) & (b == k[1])).flatten() for k in cells}
        # the non-empty (class, bias) cells a sample of each cell may be mixed with, per kind of mix
        self.same_label = {k: [o for o in cells if o[0] == k[0] and o[1] != k[1]] for k in cells}
        self.same_bias = {k: [o for o in cells if o[1] == k[1] and o[0] != k[0]] for k in cells}
        self.cell = list(zip(y.tolist(), b.tolist()))

    def partners(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For each sample of `idx`: a partner index (itself when none fits) and whether it is intra-label."""
        hp = self.ctx.hp
        intra = torch.rand(len(idx)) < hp["lisa_p_intra_label"]
        out = idx.clone()
        picks = torch.rand(len(idx), 2).tolist()  # which cell, which member
        for i, (j, same_label) in enumerate(zip(idx.tolist(), intra.tolist())):
            cells = (self.same_label if same_label else self.same_bias)[self.cell[j]]
            if cells:
                pool = self.members[cells[int(picks[i][0] * len(cells))]]
                out[i] = pool[int(picks[i][1] * len(pool))]
        return out, intra

    def loss(self, x, y, idx):
        partner, _ = self.partners(idx.cpu())
        x2, y2, _, _ = self.ctx.train.batch(partner)
        x2, y2 = x2.to(x.device), y2.to(x.device)
        alpha = self.ctx.hp["lisa_alpha"]
        lam = torch.distributions.Beta(alpha, alpha).sample((len(y),)).to(x.device)
        mixed = lam.view(-1, *([1] * (x.dim() - 1))) * x + (1 - lam.view(-1, *([1] * (x.dim() - 1)))) * x2
        logits = self.model(mixed)
        loss = lam * per_sample_ce(logits, y) + (1 - lam) * per_sample_ce(logits, y2)
        return loss.mean(), {"mixed": float((partner != idx.cpu()).float().mean())}
