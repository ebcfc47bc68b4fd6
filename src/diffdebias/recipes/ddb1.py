"""DDB Recipe I: the Bias Amplifier's pseudo-groups (class x its predicted class, `ba_grouping`)
feed a robust trainer (Group DRO, `ddb1`; group-balanced resampling, `ddb1_resample`; LISA's
selective mixup with the BA's predicted class as the pseudo-bias value, `ddb1_lisa`; `ddb`, the
recommended recipe, is `ddb1_resample` with the safeguard on and its own defaults, hparams.py); its
validation pseudo-groups drive model selection (no bias labels). With `safeguard`, when the bias
evidence says the BA found no bias, every sample is put in one group and ERM's weight decay and
selection are used: the trainer is then ERM (Group DRO exactly; resampling up to drawing with
replacement)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..stages.bias_amplifier import bias_amplifier_groups, erm_settings, no_bias_found
from ..trainers import GroupDRO, TrainerInputs
from .base import DDBRecipe


@dataclass(frozen=True)
class DDB1(DDBRecipe):
    name: str = "ddb1"
    trainer: type = GroupDRO

    def inputs(self, engine, hp):
        inferred = bias_amplifier_groups(engine, hp)
        y = engine.data.split("train").y
        eval_groups = {"val": inferred["val"].groups(engine.data.split("val").y)}
        if no_bias_found(engine, hp):
            return TrainerInputs(groups=torch.zeros_like(y), num_groups=1, bias=torch.zeros_like(y), eval_groups=eval_groups,
                                 hparams=erm_settings(engine))  # fmt: skip
        return TrainerInputs(groups=inferred["train"].groups(y), num_groups=inferred["train"].num_groups, bias=inferred["train"].preds,
                             eval_groups=eval_groups)  # fmt: skip
