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
            out.append(to_uint8(self.denoise(x, y, self.scheduler.timesteps, w, generator)))
        return torch.cat(out) if out else torch.zeros((0, channels, size, size), dtype=torch.uint8)

    def denoise(self, x: torch.Tensor, y: torch.Tensor, timesteps: torch.Tensor, w: float, generator: torch.Generator | None) -> torch.Tensor:
        """Run the guided sampler over `timesteps` from `x` (the scheduler's timesteps already set)."""
        for t in timesteps:
            x_in = self.scheduler.scale_model_input(x, t)
            if w == 0:
                pred = self.unet(x_in, t, class_labels=y).sample
            else:
                both = self.unet(torch.cat([x_in, x_in]), t, class_labels=torch.cat([y, torch.full_like(y, self.null_class)])).sample
                cond, uncond = both.chunk(2)
                pred = guided_output(cond, uncond, w)
            x = self.scheduler.step(pred, t, x, generator=generator).prev_sample
        return x


class ClassConditionalImg2ImgPipeline(ClassConditionalPipeline):
    """Image-guided sampling (SDEdit, Meng et al. 2022): each source image is noised to `strength`
    of the sampler's schedule, then denoised with guidance towards its label. strength 1 starts
    from (almost) pure noise; small strengths keep more of the source (colour, layout)."""

    @torch.no_grad()
    def __call__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        strength: float = 0.5,
        w: float = 1.0,
        steps: int = 20,
        generator: torch.Generator | None = None,
        batch_size: int = 64,
    ) -> torch.Tensor:
        """uint8 variants (N, C, H, W) of `images` (float in [-1, 1], the UNet's size) for `labels`."""
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        self.unet.eval()
        device = next(self.unet.parameters()).device
        n_run = min(steps, max(1, round(steps * strength)))
        start = steps - n_run
        out = []
        for x0, chunk in zip(torch.split(images.float(), batch_size), torch.split(labels.long(), batch_size)):
            self.scheduler.set_timesteps(steps)
            timesteps = self.scheduler.timesteps[start:]
            if hasattr(self.scheduler, "set_begin_index"):
                self.scheduler.set_begin_index(start)
            noise = torch.randn(x0.shape, generator=generator)
            x = self.scheduler.add_noise(x0, noise, timesteps[:1].repeat(len(x0))).to(device)
            out.append(to_uint8(self.denoise(x, chunk.to(device), timesteps, w, generator)))
        c, s = self.unet.config.in_channels, self.unet.config.sample_size
        return torch.cat(out) if out else torch.zeros((0, c, s, s), dtype=torch.uint8)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8 on the CPU."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
