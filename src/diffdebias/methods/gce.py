"""GCE: generalised cross-entropy (q = 0.7 by default), the usual biased auxiliary."""

from .base import Method, per_sample_gce


class GCE(Method):
    name = "gce"

    def loss(self, x, y, idx):
        return per_sample_gce(self.model(x), y, self.ctx.hp["q"]).mean(), {}
