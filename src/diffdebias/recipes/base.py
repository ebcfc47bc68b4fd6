"""The recipe interface: a recipe infers what its trainer needs (groups, upsampled indices, a
frozen biased model's losses, extra training images) and names the trainer; the run trains it.

A new method is one recipe file plus one line in `recipes/__init__.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..engine.loop import Engine
from ..stages.bias_amplifier import ba_sources
from ..trainers import Trainer, TrainerInputs


@dataclass(frozen=True)
class Recipe:
    """A registered method: `trainer` trained on what `inputs` infers. Plain baselines (ERM, GCE,
    LfF) are this class as it is: their trainer needs nothing inferred."""

    name: str
    trainer: type[Trainer]

    def uses_bias_labels(self, hp: dict[str, Any]) -> bool:
        """True only for oracle references that train on the true bias labels."""
        return False

    def trains_generator(self, hp: dict[str, Any]) -> bool:
        """Whether `inputs` trains (or reuses) the class-conditional generator of `hp['gen']`."""
        return False

    def inputs(self, engine: Engine, hp: dict[str, Any]) -> TrainerInputs:
        """Run the recipe's own stages (group inference, generation) and return the trainer's inputs."""
        return TrainerInputs()


class DDBRecipe(Recipe):
    """A Diffusing DeBias recipe: its inputs come from the Bias Amplifier (stages/bias_amplifier.py)."""

    def trains_generator(self, hp: dict[str, Any]) -> bool:
        return "synthetic" in ba_sources(hp)
