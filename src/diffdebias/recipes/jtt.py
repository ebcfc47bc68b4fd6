"""Just Train Twice (Liu et al. 2021): ERM for `jtt_epochs` infers the error set, then a fresh
model trains on the training set with the error set upsampled `lambda_up` times."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..io import write_json_atomic
from ..trainers import ERM, TrainerInputs, Upsample
from ..trainers.upsample import upsample
from .base import Recipe


@dataclass(frozen=True)
class JTT(Recipe):
    name: str = "jtt"
    trainer: type = Upsample

    def inputs(self, engine, hp):
        first = engine.train_stage("jtt_stage1", ERM, {**hp, "epochs": hp["jtt_epochs"], "selection": "last"})
        train = engine.data.split("train")
        errors = torch.nonzero(torch.as_tensor(engine.predict(first.trainer.eval_model(), train)) != train.y).flatten()
        if engine.dist.is_main:
            write_json_atomic(engine.run_dir / "jtt_error_set.json", {"size": len(errors), "indices": errors.tolist()})
        engine.notes.jtt_error_set_size = len(errors)
        return TrainerInputs(indices=upsample(len(train), errors, hp["lambda_up"]))
