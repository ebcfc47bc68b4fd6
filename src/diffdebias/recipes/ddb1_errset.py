"""DDB Recipe I, error-set variant: the Bias Amplifier's error set on the real training data is
weighted lambda_up times (JTT-style: upsampled, `ddb1_errset`, or loss-weighted,
`ddb1_errset_weighted`) and a fresh model is trained. With `safeguard`, when the bias evidence
says the BA found no bias, the error set is empty and ERM's weight decay and selection are used: the
trainer is then ERM."""

from __future__ import annotations

from dataclasses import dataclass

from ..stages.bias_amplifier import bias_amplifier_groups, erm_settings, no_bias_found
from ..trainers import Upsample
from .base import DDBRecipe
from .jtt import error_set_inputs


@dataclass(frozen=True)
class DDB1ErrSet(DDBRecipe):
    name: str = "ddb1_errset"
    trainer: type = Upsample

    def inputs(self, engine, hp):
        inferred = bias_amplifier_groups(engine, hp)
        n = len(engine.data.split("train"))
        fallback = no_bias_found(engine, hp)
        error_set = inferred["train"].error_set[:0] if fallback else inferred["train"].error_set
        return error_set_inputs(self.trainer, n, error_set, hp["lambda_up"], hparams=erm_settings(engine) if fallback else {},
                                eval_groups={"val": inferred["val"].groups(engine.data.split("val").y)})  # fmt: skip
