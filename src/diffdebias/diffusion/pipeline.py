"""Guided class-conditional sampling.

Guidance follows the DDB convention  out = (1 + w) * out(x_t, y) - w * out(x_t, null),  applied
to the model output (epsilon or v; both are linear in the noise, so the rule is the same).
In diffusers' convention  out = out_u + s * (out_c - out_u)  this is  guidance_scale s = 1 + w;
w = 0 is plain conditional sampling (and skips the unconditional pass).
"""

from __future__ import annotations

import torch
from diffusers import SchedulerMixin, UNet2DModel


def guided_output(cond: torch.Tensor, uncond: torch.Tensor, w: float) -> torch.Tensor:
    """(1 + w) * cond - w * uncond."""
    return (1.0 + w) * cond - w * uncond


class ClassConditionalPipeline:
    """Samples images of given classes from a class-conditional UNet with a null class."""

    def __init__(self, unet: UNet2DModel, scheduler: SchedulerMixin, null_class: int):
        self.unet = unet
        self.scheduler = scheduler
        self.null_class = null_class

    @torch.no_grad()
    def __call__(
        self,
        labels: torch.Tensor,
        *,
        w: float = 1.0,
        steps: int = 20,
        generator: torch.Generator | None = None,
        batch_size: int = 64,
    ) -> torch.Tensor:
        """uint8 images (N, C, H, W) for `labels` (N,); batches of `batch_size` (x2 with guidance)."""
        self.unet.eval()
        device = next(self.unet.parameters()).device
        size = self.unet.config.sample_size
        channels = self.unet.config.in_channels
        out = []
        for chunk in torch.split(labels.long(), batch_size):
            x = torch.randn((len(chunk), channels, size, size), generator=generator).to(device)
            x = x * self.scheduler.init_noise_sigma
            y = chunk.to(device)
            self.scheduler.set_timesteps(steps)
            for t in self.scheduler.timesteps:
                x_in = self.scheduler.scale_model_input(x, t)
                if w == 0:
                    pred = self.unet(x_in, t, class_labels=y).sample
                else:
                    both = self.unet(torch.cat([x_in, x_in]), t, class_labels=torch.cat([y, torch.full_like(y, self.null_class)])).sample
                    cond, uncond = both.chunk(2)
                    pred = guided_output(cond, uncond, w)
                x = self.scheduler.step(pred, t, x, generator=generator).prev_sample
            out.append(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu())
        return torch.cat(out) if out else torch.zeros((0, channels, size, size), dtype=torch.uint8)
