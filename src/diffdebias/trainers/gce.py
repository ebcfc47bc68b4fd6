"""GCE: generalised cross-entropy (q = 0.7 by default), the usual biased auxiliary."""

from .base import Trainer
from .losses import per_sample_gce


class GCE(Trainer):
    name = "gce"

    def loss(self, x, y, idx):
        return per_sample_gce(self.model(x), y, self.ctx.hp["q"]).mean(), {}
