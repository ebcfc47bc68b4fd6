"""DDB Recipe II: LfF-style end-to-end training in which the frozen Bias Amplifier plays the biased
model: W = L_BA / (L_BA + L_D) from class-wise max-normalised per-sample loss EMAs (trainers/lff.py)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..stages.bias_amplifier import bias_amplifier_groups
from ..trainers import LfF, TrainerInputs
from .base import DDBRecipe


@dataclass(frozen=True)
class DDB2(DDBRecipe):
    name: str = "ddb2"
    trainer: type = LfF

    def inputs(self, engine, hp):
        if hp["safeguard"]:
            raise ConfigError("safeguard=true is for Recipe I (ddb1, ddb1_resample, ddb1_errset, ddb1_errset_weighted); Recipe II has no ERM fallback")
        inferred = bias_amplifier_groups(engine, hp)
        return TrainerInputs(bias_losses=inferred["train"].scores, eval_groups={"val": inferred["val"].groups(engine.data.split("val").y)})
