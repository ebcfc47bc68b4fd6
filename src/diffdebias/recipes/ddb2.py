"""DDB Recipe II: LfF-style end-to-end training in which the frozen Bias Amplifier plays the biased
model: W = L_BA / (L_BA + L_D) from class-wise max-normalised per-sample loss EMAs (trainers/lff.py)."""

from __future__ import annotations

from dataclasses import dataclass

from ..stages.bias_amplifier import bias_amplifier_groups
from ..trainers import LfF, TrainerInputs
from .base import DDBRecipe


@dataclass(frozen=True)
class DDB2(DDBRecipe):
    name: str = "ddb2"
    trainer: type = LfF

    def inputs(self, engine, hp):
        inferred = bias_amplifier_groups(engine, hp)
        return TrainerInputs(bias_losses=inferred["train"].scores, eval_groups={"val": inferred["val"].groups(engine.data.split("val").y)})
