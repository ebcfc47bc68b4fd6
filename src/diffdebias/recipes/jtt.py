"""Just Train Twice (Liu et al. 2021): ERM for `jtt_epochs` infers the error set, then a fresh
model trains with the error set weighted `lambda_up` times, in one of two forms: upsampled (`jtt`,
the JTT paper's: the error set repeated in every epoch) or loss-weighted over ordinary epochs
(`jtt_weighted`, SubpopBench's: the error set's loss x lambda_up)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..io import write_json_atomic
from ..trainers import ERM, Reweight, TrainerInputs, Upsample
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
        return error_set_inputs(self.trainer, len(train), errors, hp["lambda_up"])


def error_set_inputs(trainer: type, n: int, error_set: torch.Tensor, lambda_up: int, **extra) -> TrainerInputs:
    """What `trainer` needs to weight `error_set` lambda_up times among n training samples: the
    upsampled indices (Upsample) or per-sample loss weights (Reweight)."""
    if trainer is Reweight:
        weights = torch.ones(n)
        weights[error_set] = float(lambda_up)
        return TrainerInputs(loss_weights=weights, **extra)
    return TrainerInputs(indices=upsample(n, error_set, lambda_up), **extra)
