"""The trainer interface (DomainBed style): a trainer owns its models and optimisers and turns a
batch into a loss; the engine does the rest (loop, AMP, checkpoints, evaluation).

Trainers are pure: they never build another pipeline. What a recipe inferred (groups, an
upsampled index list, a frozen biased model's losses, a training split with synthetic images)
arrives ready-made in :class:`TrainerInputs` (SpuCo's split of group inference from robust training).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..data.base import BiasedDataset, Split
from ..distributed import Dist, current
from ..errors import ConfigError
from ..models import build_model
from .losses import per_sample_ce


@dataclass
class TrainerInputs:
    """What a recipe hands to a trainer; every field is optional and says what the trainer gets."""

    groups: torch.Tensor | None = None  # group id of every training sample (Group DRO)
    num_groups: int | None = None  # groups that may occur (default: max id + 1)
    bias: torch.Tensor | None = None  # a (pseudo-)bias value per training sample (LISA's partners)
    indices: torch.Tensor | None = None  # one epoch's training indices, with repeats (upsampling)
    loss_weights: torch.Tensor | None = None  # a fixed loss weight per training sample (reweighting)
    bias_losses: torch.Tensor | None = None  # per-sample loss of a frozen biased model (LfF without its biased model)
    train_split: Split | None = None  # another training split (e.g. real + synthetic images, DFR's validation split)
    init_weights: dict[str, torch.Tensor] | None = None  # a trained model's weights to start from (DFR's base model)
    eval_groups: dict[str, torch.Tensor] = field(default_factory=dict)  # inferred groups of eval splits, for selection
    hparams: dict[str, Any] = field(default_factory=dict)  # the recipe's changes to the stage's hyperparameters (a fallback's)


@dataclass
class TrainerContext:
    """What a trainer may know about its run: the data (labels y only), hyperparameters, inputs."""

    data: BiasedDataset
    hp: dict[str, Any]
    device: torch.device
    inputs: TrainerInputs = field(default_factory=TrainerInputs)
    dist: Dist = field(default_factory=current)  # the processes of a multi-process launch (distributed.py)

    @property
    def train(self) -> Split:
        return self.inputs.train_split if self.inputs.train_split is not None else self.data.split("train")

    @property
    def num_train(self) -> int:
        return len(self.train)

    def new_model(self, arch: str | None = None) -> nn.Module:
        hp = self.hp
        return build_model(arch or hp["model"], self.data.num_classes, self.data.spec, hp["pretrained"]).to(self.device)

    def new_optimizer(self, params) -> torch.optim.Optimizer:
        hp = self.hp
        if hp["optimizer"] == "adam":
            return torch.optim.Adam(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
        if hp["optimizer"] == "adamw":
            return torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
        if hp["optimizer"] == "sgd":
            return torch.optim.SGD(params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
        raise ConfigError(f"unknown optimizer '{hp['optimizer']}'; valid: adam, adamw, sgd")


class Trainer:
    """Base class: plain ERM on one model. Subclasses override `loss` and, if they need to, the rest.

    `loss` gets this process's block of the global batch and returns a mean over it; under several
    processes the engine weights it so that the averaged gradient is the global batch's. State that
    spans batches (loss EMAs, group weights) must be updated from the whole global batch
    (`ctx.dist.gather` / `ctx.dist.sum`) so that every process keeps the same state."""

    name = "erm"
    # the TrainerInputs fields a trainer cannot do without, each with what it is and who gives it
    needs: ClassVar[dict[str, str]] = {}

    def __init__(self, ctx: TrainerContext):
        missing = [what for field_name, what in self.needs.items() if getattr(ctx.inputs, field_name) is None]
        if missing:
            raise ConfigError(f"the {self.name} trainer needs {missing[0]}")
        self.ctx = ctx
        self.model = ctx.new_model()
        self.optimizer = ctx.new_optimizer(self.model.parameters())

    @property
    def eval_groups(self) -> dict[str, torch.Tensor]:
        """Inferred groups of evaluation splits (pseudo-group metrics and selection)."""
        return self.ctx.inputs.eval_groups

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.optimizer}

    def eval_model(self) -> nn.Module:
        """The model whose predictions are evaluated and selected."""
        return self.model

    def train_split(self) -> Split:
        """The split the engine trains on (default: the dataset's, or the one the recipe gave)."""
        return self.ctx.train

    def epoch_indices(self, gen: torch.Generator) -> torch.Tensor:
        """Training indices of one epoch, in order (default: a permutation of the training set)."""
        return torch.randperm(self.ctx.num_train, generator=gen)

    def epoch_size(self) -> int:
        """Number of indices `epoch_indices` returns (for per-step schedules)."""
        return self.ctx.num_train

    def loss(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return per_sample_ce(self.model(x), y).mean(), {}

    def extra_state(self) -> dict[str, Any]:
        """Trainer state beyond weights and optimisers (loss EMAs, group weights), for checkpoints."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what `extra_state` returned."""
