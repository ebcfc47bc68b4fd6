"""Classifiers: the LfF MLP, a small CNN, and torchvision ResNet-18 / ResNet-50."""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models as tv

from .data.base import ImageSpec
from .errors import ConfigError
from .state import load_weights

MODEL_NAMES = ("mlp", "cnn", "resnet18", "resnet50")


class MLP(nn.Module):
    """The LfF Colored-MNIST MLP: three hidden layers of 100 units."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 100):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """Four conv blocks (32-64-128-128) with BatchNorm and global pooling: fast on CPU."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        layers: list[nn.Module] = []
        width_in = channels
        for i, width in enumerate((32, 64, 128, 128)):
            layers += [nn.Conv2d(width_in, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
            width_in = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(width_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def build_model(name: str, num_classes: int, spec: ImageSpec, pretrained: str = "") -> nn.Module:
    """A randomly initialised classifier; ResNets may start from a local weights file."""
    if name == "mlp":
        model: nn.Module = MLP(spec.channels * spec.size * spec.size, num_classes)
    elif name == "cnn":
        model = SmallCNN(spec.channels, num_classes)
    elif name in ("resnet18", "resnet50"):
        model = getattr(tv, name)(weights=None)
        if spec.channels != 3:
            model.conv1 = nn.Conv2d(spec.channels, 64, 7, 2, 3, bias=False)
        if spec.size <= 64:  # CIFAR-style stem for small images
            model.conv1 = nn.Conv2d(spec.channels, 64, 3, 1, 1, bias=False)
            model.maxpool = nn.Identity()
        if pretrained:
            _load_backbone(model, pretrained, name)
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    else:
        raise ConfigError(f"unknown model '{name}'; valid: {', '.join(MODEL_NAMES)}")
    if pretrained and name in ("mlp", "cnn"):
        raise ConfigError("'pretrained' applies to resnet18 / resnet50 only")
    return model


def classifier_head(model: nn.Module) -> nn.Linear:
    """The final linear layer of a model built by `build_model` (DFR retrains it)."""
    head = model.net[-1] if isinstance(model, MLP) else getattr(model, "fc", None)
    if not isinstance(head, nn.Linear):
        raise ConfigError(f"{type(model).__name__} has no final linear layer to retrain")
    return head


def _load_backbone(model: nn.Module, path: str, name: str) -> None:
    """Load a local ResNet state dict, skipping the classifier and a replaced stem."""
    own = model.state_dict()
    state = load_weights(path)
    skipped = {k for k, v in state.items() if k.startswith("fc.") or (k in own and own[k].shape != v.shape)}
    if skipped - {"fc.weight", "fc.bias", "conv1.weight"}:
        raise ConfigError(f"{path}: weights do not fit {name}: shape mismatch in {sorted(skipped)[:3]}")
    missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=False)
    if unexpected or set(missing) - skipped - {"fc.weight", "fc.bias"}:
        raise ConfigError(f"{path}: weights do not match {name} (unexpected {unexpected[:3]}, missing {sorted(missing)[:3]})")
