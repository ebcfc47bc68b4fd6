"""Where a classifier looks on bias-conflicting test images (captum).

Convolutional models (cnn, resnets): Grad-CAM on the last convolution (captum LayerGradCam),
upsampled to the image size. The LfF MLP has no spatial feature maps, so Grad-CAM does not apply:
it gets Integrated Gradients (captum, black-image baseline, 32 steps), |attribution| summed over
channels. Maps are for the true class and normalised to [0, 1] per image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam
from torch import nn

from ..data.base import BiasedDataset
from ..models import build_model
from ..records import RunResult
from ..state import load_weights, stage_weights


def load_classifier(run_dir: Path, result: RunResult, data: BiasedDataset) -> nn.Module:
    """The selected weights of a run's main stage."""
    model = build_model(result.hparams["model"], data.num_classes, data.spec)
    model.load_state_dict(load_weights(stage_weights(run_dir, "main")))
    return model.eval()


def conflicting_test_indices(data: BiasedDataset, k: int, seed: int = 0) -> np.ndarray:
    """Up to `k` bias-conflicting test images, one class after another, chosen by a fixed seed."""
    test = data.split("test")
    y, conflicting = test.y.numpy(), data.conflicting("test").numpy()
    rng = np.random.default_rng(seed)
    chosen = []
    for c in rng.permutation(data.num_classes)[:k]:
        pool = np.flatnonzero((y == c) & conflicting)
        if len(pool):
            chosen.append(int(rng.choice(pool)))
    return np.array(chosen, dtype=np.int64)


def method_name(model: nn.Module) -> str:
    return "Grad-CAM" if _last_conv(model) is not None else "Integrated Gradients"


def attribution_maps(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """(N, H, W) maps in [0, 1] for the `target` classes."""
    conv = _last_conv(model)
    if conv is not None:
        attr = LayerGradCam(model, conv).attribute(x, target=target, relu_attributions=True)
        attr = LayerAttribution.interpolate(attr, x.shape[-2:], interpolate_mode="bilinear")[:, 0]
    else:
        attr = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=32).abs().sum(1)
    attr = attr.detach().float()
    flat = attr.flatten(1)
    lo, hi = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
    return ((attr - lo) / (hi - lo).clamp_min(1e-12)).numpy()


def _last_conv(model: nn.Module) -> nn.Module | None:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1] if convs else None
