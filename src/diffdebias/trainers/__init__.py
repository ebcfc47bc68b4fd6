"""Pure trainers: each turns a batch into a loss, given what a recipe inferred (TrainerInputs)."""

from .base import Trainer, TrainerContext, TrainerInputs
from .erm import ERM
from .gce import GCE
from .group_balanced import GroupBalanced
from .groupdro import GroupDRO
from .last_layer import LastLayer
from .lff import LfF
from .lisa import LISA
from .reweight import Reweight
from .upsample import Upsample

__all__ = ["ERM", "GCE", "GroupBalanced", "GroupDRO", "LISA", "LastLayer", "LfF", "Reweight", "Trainer", "TrainerContext", "TrainerInputs", "Upsample"]
