"""The method interface (DomainBed style): a method owns its models and optimisers and turns a
batch into a loss; the shared engine does the rest (loop, AMP, checkpoints, evaluation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import BiasedDataset, Split
from ..distributed import Dist, current
from ..errors import ConfigError
from ..models import build_model


@dataclass
class MethodContext:
    """What a method may know about its run. `train_b` is None unless the method is allowed bias labels."""

    data: BiasedDataset
    hp: dict[str, Any]
    device: torch.device
    train_b: torch.Tensor | None = None
    groups: torch.Tensor | None = None  # per-training-sample group ids, for group-based trainers
    extras: dict[str, Any] = field(default_factory=dict)
    dist: Dist = field(default_factory=current)  # the processes of a multi-process launch (distributed.py)

    @property
    def num_train(self) -> int:
        return len(self.data.split("train"))

    def new_model(self) -> nn.Module:
        hp = self.hp
        return build_model(hp["model"], self.data.num_classes, self.data.spec, hp["pretrained"]).to(self.device)

    def new_optimizer(self, params) -> torch.optim.Optimizer:
        hp = self.hp
        if hp["optimizer"] == "adam":
            return torch.optim.Adam(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
        if hp["optimizer"] == "adamw":
            return torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
        if hp["optimizer"] == "sgd":
            return torch.optim.SGD(params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
        raise ConfigError(f"unknown optimizer '{hp['optimizer']}'; valid: adam, adamw, sgd")


class Method:
    """Base class: plain ERM on one model. Subclasses override `loss` and, if they need to, the rest.

    `loss` gets this process's block of the global batch and returns a mean over it; under several
    processes the engine weights it so that the averaged gradient is the global batch's. State that
    spans batches (loss EMAs, group weights) must be updated from the whole global batch
    (`ctx.dist.gather` / `ctx.dist.sum`) so that every process keeps the same state."""

    name = "erm"
    pseudo_groups: dict[str, torch.Tensor] | None = None  # inferred groups of eval splits, e.g. {"val": ...}

    def __init__(self, ctx: MethodContext):
        self.ctx = ctx
        self.model = ctx.new_model()
        self.optimizer = ctx.new_optimizer(self.model.parameters())

    @classmethod
    def needs_bias_labels(cls, hp: dict[str, Any]) -> bool:
        """True only for oracle references that train on the true bias labels."""
        return False

    def prepare(self, engine) -> None:
        """Run preliminary stages (e.g. JTT's first model) before training; default: nothing."""

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.optimizer}

    def eval_model(self) -> nn.Module:
        """The model whose predictions are evaluated and selected."""
        return self.model

    def train_split(self) -> Split:
        """The split the engine trains on (default: the dataset's training split)."""
        return self.ctx.data.split("train")

    def epoch_indices(self, gen: torch.Generator) -> torch.Tensor:
        """Training indices of one epoch, in order (default: a permutation of the training set)."""
        return torch.randperm(self.ctx.num_train, generator=gen)

    def epoch_size(self) -> int:
        """Number of indices `epoch_indices` returns (for per-step schedules)."""
        return self.ctx.num_train

    def loss(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        losses = per_sample_ce(self.model(x), y)
        return losses.mean(), {}

    def extra_state(self) -> dict[str, Any]:
        """Method state beyond weights and optimisers (loss EMAs, group weights), for checkpoints."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what `extra_state` returned."""


def per_sample_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), y, reduction="none")


def per_sample_gce(logits: torch.Tensor, y: torch.Tensor, q: float) -> torch.Tensor:
    """Generalised cross-entropy in LfF's form: CE weighted by q * p_y^q (detached).

    Its gradient is q times that of (1 - p_y^q) / q, the GCE of Zhang & Sabuncu.
    """
    logits = logits.float()
    p_y = torch.softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1).detach()
    return F.cross_entropy(logits, y, reduction="none") * (p_y**q) * q


MethodFactory = Callable[[MethodContext], Method]
