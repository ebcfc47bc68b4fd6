"""DDB Recipe II: LfF-style end-to-end training in which the frozen Bias Amplifier plays the biased
model: W = L_BA / (L_BA + L_D) from class-wise max-normalised per-sample loss EMAs.

The BA is frozen, so its loss on a sample is a constant: its EMA is set to that value at the start
(the class-wise maxima are then exact from the first step); the debiased model's EMA is LfF's.
"""

from __future__ import annotations

from .base import Method, per_sample_ce
from .lff import LossEMA, relative_difficulty


class DDB2(Method):
    name = "ddb2"

    def prepare(self, engine) -> None:
        hp, labels, n = self.ctx.hp, self.ctx.data.split("train").y, self.ctx.num_train
        from ..ddb import bias_amplifier_groups  # late: ddb imports the engine, which imports methods

        inference = bias_amplifier_groups(engine, hp)
        self.pseudo_groups = {"val": inference["val"].groups(self.ctx.data.split("val").y)}
        self.ema_ba = LossEMA(n, labels, self.ctx.data.num_classes, hp["ema"])
        self.ema_ba.values.copy_(inference["train"].scores)
        self.ema_ba.updated.fill_(1.0)
        self.ema_d = LossEMA(n, labels, self.ctx.data.num_classes, hp["ema"])

    def loss(self, x, y, idx):
        ce_d = per_sample_ce(self.model(x), y)
        w = relative_difficulty(self.ema_ba, self.ema_d, self.ema_ba.values[idx.cpu()], ce_d, y, idx, self.ctx.dist).to(x.device)
        return (ce_d * w).mean(), {"w_mean": float(w.mean())}

    def extra_state(self):
        return {"ema_d": self.ema_d.state()}

    def load_extra_state(self, state):
        self.ema_d.load(state["ema_d"])
