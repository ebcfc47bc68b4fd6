"""DDB Recipe I, error-set variant: the Bias Amplifier's error set on the real training data is
upsampled lambda_up times (JTT-style) and a fresh model is trained."""

from .jtt import JTT, upsample


class DDB1ErrSet(JTT):
    name = "ddb1_errset"

    def prepare(self, engine) -> None:
        from ..ddb import bias_amplifier_groups  # late: ddb imports the engine, which imports methods

        inference = bias_amplifier_groups(engine, self.ctx.hp)
        self.pseudo_groups = {"val": inference["val"].groups(self.ctx.data.split("val").y)}
        self.upsampled = upsample(self.ctx.num_train, inference["train"].error_set, self.ctx.hp["lambda_up"])
