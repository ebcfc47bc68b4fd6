"""DDM's indicator and loss.

The indicator is an MLP on the flattened predicted noise eps_theta(x_t, t, c):
Linear(d, 1024) - ReLU - Linear(1024, 512) - ReLU - Linear(512, num_groups), and the DDM loss is
(1 - alpha) * MSE(model output, target) + alpha * CE(indicator(eps_pred), g), with the indicator
and the denoiser optimised jointly by one optimiser (the official code).

"Predicted noise" is always epsilon: a v-prediction model's output is converted with
eps = sqrt(a_t) * v + sqrt(1 - a_t) * x_t (exact, since x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps and
v = sqrt(a_t) eps - sqrt(1 - a_t) x0), so the indicator sees the same quantity whichever
parameterisation the denoiser uses; gradients flow through the model output only.

`sign="adversarial"` is this project's variant, not the paper's: a gradient-reversal layer makes
the denoiser maximise the indicator's cross-entropy while the indicator still minimises it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

SIGNS = ("faithful", "adversarial")


class Indicator(nn.Module):
    """Linear(d, 1024) - ReLU - Linear(1024, 512) - ReLU - Linear(512, num_groups)."""

    def __init__(self, in_features: int, num_groups: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, 1024), nn.ReLU(),
            nn.Linear(1024, 512), nn.ReLU(),
            nn.Linear(512, num_groups),
        )  # fmt: skip

    def forward(self, eps: torch.Tensor) -> torch.Tensor:
        return self.net(eps)


def predicted_noise(output: torch.Tensor, x_t: torch.Tensor, alphas_cumprod: torch.Tensor, t: torch.Tensor, prediction: str) -> torch.Tensor:
    """The model's predicted epsilon from its output (epsilon or v-prediction)."""
    if prediction == "epsilon":
        return output
    if prediction == "v_prediction":
        a = alphas_cumprod.to(output.device)[t].view(-1, *([1] * (output.ndim - 1))).to(output.dtype)
        return a.sqrt() * output + (1 - a).sqrt() * x_t
    raise ConfigError(f"DDM: prediction type '{prediction}' has no predicted noise; use epsilon or v_prediction")


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return -grad


def ddm_loss(
    mse: torch.Tensor, eps_pred: torch.Tensor, groups: torch.Tensor, indicator: Indicator, alpha: float, sign: str = "faithful"
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(1 - alpha) * mse + alpha * CE(indicator(eps_pred), groups); returns the loss and its parts."""
    if sign not in SIGNS:
        raise ConfigError(f"DDM: unknown sign '{sign}'; valid: {', '.join(SIGNS)}")
    feats = eps_pred.float().flatten(1)
    if sign == "adversarial":
        feats = _GradReverse.apply(feats)
    logits = indicator(feats)
    ce = F.cross_entropy(logits, groups)
    acc = (logits.argmax(1) == groups).float().mean()
    return (1 - alpha) * mse + alpha * ce, {"mse": mse.detach(), "ce": ce.detach(), "indicator_acc": acc.detach()}
