"""DDB Recipe I: the Bias Amplifier's pseudo-groups (class x its predicted class, `ba_grouping`)
feed Group DRO; its validation pseudo-groups drive model selection (no bias labels)."""

from __future__ import annotations

from dataclasses import dataclass

from ..stages.bias_amplifier import bias_amplifier_groups
from ..trainers import GroupDRO, TrainerInputs
from .base import DDBRecipe


@dataclass(frozen=True)
class DDB1(DDBRecipe):
    name: str = "ddb1"
    trainer: type = GroupDRO

    def inputs(self, engine, hp):
        inferred = bias_amplifier_groups(engine, hp)
        y = engine.data.split("train").y
        return TrainerInputs(groups=inferred["train"].groups(y), num_groups=inferred["train"].num_groups,
                             eval_groups={"val": inferred["val"].groups(engine.data.split("val").y)})  # fmt: skip
