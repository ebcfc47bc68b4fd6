"""Last-layer retraining (DFR, Kirichenko et al. 2023): a trained model's features stay frozen, its
final linear layer is re-initialised and retrained with group-balanced resampling on the split and
groups a recipe gives (DFR: the validation split)."""

from __future__ import annotations

from ..models import classifier_head
from .base import TrainerContext
from .group_balanced import GroupBalanced


class LastLayer(GroupBalanced):
    name = "last_layer"
    needs = {
        **GroupBalanced.needs,
        "init_weights": "the trained model whose last layer is retrained (a recipe's base stage, dfr.py)",
        "train_split": "the split the last layer is retrained on (DFR: the validation split)",
    }

    def __init__(self, ctx: TrainerContext):
        super().__init__(ctx)
        self.model.load_state_dict(ctx.inputs.init_weights)
        head = classifier_head(self.model)
        head.reset_parameters()
        for p in self.model.parameters():
            p.requires_grad_(False)
        for p in head.parameters():
            p.requires_grad_(True)
        self.optimizer = ctx.new_optimizer(head.parameters())

    def loss(self, x, y, idx):
        self.model.eval()  # frozen features: BatchNorm keeps the base model's running statistics
        return super().loss(x, y, idx)
