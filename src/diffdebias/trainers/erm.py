"""ERM: plain cross-entropy."""

from .base import Trainer


class ERM(Trainer):
    name = "erm"
