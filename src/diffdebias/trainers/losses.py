"""Per-sample losses, defined once: cross-entropy and LfF's generalised cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def per_sample_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every sample, in float32."""
    return F.cross_entropy(logits.float(), y, reduction="none")


def per_sample_gce(logits: torch.Tensor, y: torch.Tensor, q: float) -> torch.Tensor:
    """Generalised cross-entropy in LfF's form: CE weighted by q * p_y^q (detached).

    Its gradient is q times that of (1 - p_y^q) / q, the GCE of Zhang & Sabuncu.
    """
    logits = logits.float()
    p_y = torch.softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1).detach()
    return per_sample_ce(logits, y) * (p_y**q) * q
