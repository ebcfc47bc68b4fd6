"""DiffuBias (METHODS.md s. 2): plain CE on the real training images plus generated
bias-conflicting ones; the pipeline (GCE biased classifier, top-K candidates per class,
captioner, text filter, generator) is in diffubias/stages.py."""

from __future__ import annotations

from dataclasses import dataclass

from ..data.concat import ConcatSplit
from ..diffubias import resolve_backends, synthetic_split
from ..records import TrainingSetNote
from ..trainers import ERM, TrainerInputs
from .base import Recipe


@dataclass(frozen=True)
class DiffuBias(Recipe):
    name: str = "diffubias"
    trainer: type = ERM

    def trains_generator(self, hp):
        return resolve_backends(hp)[1] == "local-conditional"

    def inputs(self, engine, hp):
        real = engine.data.split("train")
        synthetic = synthetic_split(engine, hp)
        engine.notes.final_training_set = TrainingSetNote(len(real), len(synthetic))
        return TrainerInputs(train_split=ConcatSplit("train", [real, synthetic]))
