"""Just Train Twice (Liu et al. 2021): ERM for `jtt_epochs`, then a fresh model on the
training set with the first model's error set upsampled `lambda_up` times."""

from __future__ import annotations

import torch

from ..io import write_json_atomic
from .base import Method
from .erm import ERM


class JTT(Method):
    name = "jtt"

    def prepare(self, engine) -> None:
        first = engine.train_stage("jtt_stage1", ERM, {**self.ctx.hp, "epochs": self.ctx.hp["jtt_epochs"], "selection": "last"})
        train = self.ctx.data.split("train")
        preds = engine.predict(first.method.eval_model(), train)
        errors = torch.nonzero(torch.as_tensor(preds) != train.y).flatten()
        if engine.dist.is_main:
            write_json_atomic(engine.run_dir / "jtt_error_set.json", {"size": len(errors), "indices": errors.tolist()})
        self.upsampled = upsample(len(train), errors, self.ctx.hp["lambda_up"])
        engine.note("jtt_error_set_size", len(errors))

    def epoch_size(self) -> int:
        return len(self.upsampled)

    def epoch_indices(self, gen):
        return self.upsampled[torch.randperm(len(self.upsampled), generator=gen)]


def upsample(n: int, error_set: torch.Tensor, lambda_up: int) -> torch.Tensor:
    """All n training indices, with those of the error set repeated lambda_up times in total."""
    return torch.cat([torch.arange(n), error_set.repeat(lambda_up - 1)])
