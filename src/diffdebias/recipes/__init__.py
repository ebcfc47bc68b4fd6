"""The registry of classifier-debiasing methods: one recipe file per method, one line each here."""

from __future__ import annotations

from ..errors import ConfigError
from ..trainers import ERM, GCE, LISA, GroupBalanced, LfF, Reweight
from .base import Recipe
from .ddb1 import DDB1
from .ddb1_errset import DDB1ErrSet
from .ddb2 import DDB2
from .dfr import DFR
from .diffubias import DiffuBias
from .groupdro import LabelGroups
from .jtt import JTT

METHODS: dict[str, Recipe] = {
    "erm": Recipe("erm", ERM),
    "gce": Recipe("gce", GCE),
    "lff": Recipe("lff", LfF),
    "jtt": JTT(),
    "jtt_weighted": JTT("jtt_weighted", Reweight),
    "groupdro": LabelGroups(),
    "resample_oracle": LabelGroups("resample_oracle", GroupBalanced),
    "lisa_oracle": LabelGroups("lisa_oracle", LISA),
    "dfr_oracle": DFR(),
    "ddb": DDB1("ddb", GroupBalanced),  # the recommended DDB recipe (README): ddb1_resample with its own defaults
    "ddb1": DDB1(),
    "ddb1_resample": DDB1("ddb1_resample", GroupBalanced),
    "ddb1_lisa": DDB1("ddb1_lisa", LISA),
    "ddb1_dfr": DFR("ddb1_dfr", groups_from="bias_amplifier"),
    "ddb1_errset": DDB1ErrSet(),
    "ddb1_errset_weighted": DDB1ErrSet("ddb1_errset_weighted", Reweight),
    "ddb2": DDB2(),
    "diffubias": DiffuBias(),
}
RECOMMENDED = "ddb"  # the README's "Recommended DDB recipe" line (tests/test_targets.py checks it)


def get_method(name: str) -> Recipe:
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}'; valid: {', '.join(METHODS)}")
    return METHODS[name]


__all__ = ["METHODS", "RECOMMENDED", "Recipe", "get_method"]
