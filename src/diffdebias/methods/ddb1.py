"""DDB Recipe I: the Bias Amplifier's pseudo-groups (class x its predicted class, `ba_grouping`) feed Group DRO."""

from .groupdro import GroupDRO


class DDB1(GroupDRO):
    name = "ddb1"

    def prepare(self, engine) -> None:
        from ..ddb import bias_amplifier_groups  # late: ddb imports the engine, which imports methods

        inference = bias_amplifier_groups(engine, self.ctx.hp)
        self.pseudo_groups = {"val": inference["val"].groups(self.ctx.data.split("val").y)}
        self.set_groups(inference["train"].groups(self.ctx.data.split("train").y), num_groups=inference["train"].num_groups)
