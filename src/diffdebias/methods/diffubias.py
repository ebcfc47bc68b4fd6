"""DiffuBias (METHODS.md s. 2): plain CE on the real training images plus generated
bias-conflicting ones. `prepare` runs the pipeline (diffubias/stages.py): GCE biased classifier,
top-K candidates per class, captioner, text filter, generator."""

from __future__ import annotations

import torch

from ..data.base import Split
from ..data.concat import ConcatSplit
from .base import Method


class DiffuBias(Method):
    name = "diffubias"

    def prepare(self, engine) -> None:
        from ..diffubias import synthetic_split  # late: the pipeline imports the engine, which imports the methods

        synthetic = synthetic_split(engine, self.ctx.hp)
        self.train = ConcatSplit("train", [self.ctx.data.split("train"), synthetic])
        engine.note("final_training_set", {"real": self.ctx.num_train, "synthetic": len(synthetic)})

    def train_split(self) -> Split:
        return self.train

    def epoch_size(self) -> int:
        return len(self.train)

    def epoch_indices(self, gen: torch.Generator) -> torch.Tensor:
        return torch.randperm(len(self.train), generator=gen)
