"""The registry of classifier-debiasing methods: one file per method, one line each here."""

from __future__ import annotations

from ..errors import ConfigError
from .base import Method
from .ddb1 import DDB1
from .ddb1_errset import DDB1ErrSet
from .ddb2 import DDB2
from .diffubias import DiffuBias
from .erm import ERM
from .gce import GCE
from .groupdro import GroupDRO
from .jtt import JTT
from .lff import LfF

METHODS: dict[str, type[Method]] = {
    "erm": ERM,
    "gce": GCE,
    "lff": LfF,
    "jtt": JTT,
    "groupdro": GroupDRO,
    "ddb1": DDB1,
    "ddb1_errset": DDB1ErrSet,
    "ddb2": DDB2,
    "diffubias": DiffuBias,
}


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}'; valid: {', '.join(sorted(METHODS))}")
    return METHODS[name]

