"""Generator backends: one new training image per request (a candidate and, for text-to-image,
one of its kept captions), labelled with the candidate's class.

- `diffusers-t2i`: a Stable Diffusion family text-to-image pipeline (SD 1.x / 2.x / XL / 3.x, via
  diffusers' `AutoPipelineForText2Image`) from a local folder or the local Hugging Face cache;
  one image per caption. This is the paper's generator (its code: SD 3.5, 28 steps, guidance 3.5).
- `local-conditional`: this project's OFFLINE ADAPTATION, not the paper's generator. The
  class-conditional diffusion model of the diffusion engine (trained on the biased training split,
  cached, the same one DDB uses) is image-guided: each candidate is noised to `strength` of the
  schedule and denoised with its class label (SDEdit), so it needs no text and no download.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F

from ..data.base import ImageSpec, Split
from ..diffusion.pipeline import ClassConditionalImg2ImgPipeline
from ..diffusion.schedulers import sampling_scheduler, training_scheduler
from ..diffusion.train import load_unet
from ..errors import ConfigError
from .hub import resolve_local_model

T2I_MODEL = {"what": "text-to-image", "option": "--t2i-model", "key": "t2i_model", "example": "stabilityai/stable-diffusion-3.5-large"}


class Generator(Protocol):
    needs_captions: bool

    def __call__(self, sources: Split, prompts: list[str | None], seed: int) -> torch.Tensor:
        """uint8 images (N, C, H, W), one per source sample (its label) and prompt."""


class LocalConditionalGenerator:
    """SDEdit variants of the candidates from the project's class-conditional generator."""

    needs_captions = False

    def __init__(self, run_dir: Path, device: torch.device, *, strength: float, sampler: str, steps: int, w: float, batch_size: int = 64):
        meta = json.loads((Path(run_dir) / "config.json").read_text())
        cfg = meta["config"]
        base = training_scheduler(cfg["schedule"], cfg["prediction"], cfg["timesteps"], cfg["beta_start"], cfg["beta_end"])
        self.unet = load_unet(run_dir).to(device)
        self.pipe = ClassConditionalImg2ImgPipeline(self.unet, sampling_scheduler(sampler, base.config), null_class=meta["num_classes"])
        c, size = self.unet.config.in_channels, self.unet.config.sample_size
        self.spec = ImageSpec(size, c, (0.5,) * c, (0.5,) * c)  # the [-1, 1] range the generator was trained on
        self.strength, self.steps, self.w, self.batch_size = strength, steps, w, batch_size

    def __call__(self, sources: Split, prompts: list[str | None], seed: int) -> torch.Tensor:
        x0, y, _, _ = sources.with_spec(self.spec).batch(torch.arange(len(sources)))
        gen = torch.Generator().manual_seed(seed)
        return self.pipe(x0, y, strength=self.strength, w=self.w, steps=self.steps, generator=gen, batch_size=self.batch_size)


class DiffusersT2IGenerator:
    """One image per caption from a diffusers text-to-image pipeline."""

    needs_captions = True

    def __init__(self, model: str, device: torch.device, *, steps: int, guidance: float, size: int, batch_size: int = 16):
        from diffusers import AutoPipelineForText2Image

        path = resolve_local_model(model, **T2I_MODEL)
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        self.pipe = AutoPipelineForText2Image.from_pretrained(path, local_files_only=True, use_safetensors=True, dtype=dtype).to(device)
        self.pipe.set_progress_bar_config(disable=True)
        self.steps, self.guidance, self.size, self.batch_size = steps, guidance, size, batch_size

    def __call__(self, sources: Split, prompts: list[str | None], seed: int) -> torch.Tensor:
        if any(p is None for p in prompts):
            raise ConfigError("generator 'diffusers-t2i' needs a caption per image: use --captioner transformers")
        out = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            kwargs = {"height": self.size, "width": self.size} if self.size else {}
            images = self.pipe(prompt=chunk, num_inference_steps=self.steps, guidance_scale=self.guidance, output_type="np",
                               generator=torch.Generator().manual_seed(seed + start), **kwargs).images  # fmt: skip
            out.append((torch.as_tensor(images).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 3, 1, 2))
        return torch.cat(out)


GENERATORS: dict[str, type[Generator]] = {"local-conditional": LocalConditionalGenerator, "diffusers-t2i": DiffusersT2IGenerator}


def fit_to_spec(images: torch.Tensor, spec: ImageSpec) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 at the dataset's channels and size (centre square crop, resize)."""
    n, c, h, w = images.shape
    if c != spec.channels:
        images = images.expand(-1, 3, -1, -1) if c == 1 else images.float().mean(dim=1, keepdim=True).round().to(torch.uint8)
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    images = images[:, :, top : top + side, left : left + side]
    if side == spec.size:
        return images.contiguous()
    x = F.interpolate(images.float(), size=(spec.size, spec.size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)
