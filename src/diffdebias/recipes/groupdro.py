"""Group DRO over groups read from labels: the true (y, b) cells make it the ORACLE reference (it
uses training bias labels; `groups=oracle`), `groups=class` gives class-level DRO without them.
DDB's Recipe I feeds the same trainer with the Bias Amplifier's pseudo-groups (ddb1.py)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..trainers import GroupDRO, TrainerInputs
from .base import Recipe

GROUP_SOURCES = ("oracle", "class")


@dataclass(frozen=True)
class LabelGroups(Recipe):
    name: str = "groupdro"
    trainer: type = GroupDRO

    def uses_bias_labels(self, hp):
        return hp["groups"] == "oracle"

    def inputs(self, engine, hp):
        data, train = engine.data, engine.data.split("train")
        if hp["groups"] == "oracle":
            if not train.has_bias_labels or not data.num_bias:
                raise ConfigError("groups=oracle needs bias labels on every training sample; this dataset has none (use groups=class)")
            return TrainerInputs(groups=train.y * data.num_bias + train.b, bias=train.b.clone())
        if hp["groups"] == "class":
            return TrainerInputs(groups=train.y.clone())
        raise ConfigError(f"hyperparameter 'groups': {hp['groups']!r} is not one of {', '.join(GROUP_SOURCES)}; DDB Recipe I (ddb1) infers groups")
