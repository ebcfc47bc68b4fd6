"""Pure trainers: each turns a batch into a loss, given what a recipe inferred (TrainerInputs)."""

from .base import Trainer, TrainerContext, TrainerInputs
from .erm import ERM
from .gce import GCE
from .groupdro import GroupDRO
from .lff import LfF
from .upsample import Upsample

__all__ = ["ERM", "GCE", "GroupDRO", "LfF", "Trainer", "TrainerContext", "TrainerInputs", "Upsample"]
