"""Captioner backends: image -> several captions. `transformers` loads any image-to-text model
(BLIP, BLIP-2, LLaVA, GIT, ...) through `AutoModelForImageTextToText` from a local folder or
the local Hugging Face cache; `none` writes no captions (for generators that need no text)."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError
from .hub import resolve_local_model

CAPTIONERS = ("transformers", "none")
CAPTIONER_MODEL = {"what": "captioner", "option": "--captioner-model", "key": "captioner_model", "example": "Salesforce/blip-image-captioning-large"}


class Captioner(Protocol):
    def __call__(self, images: list[Image.Image], seed: int) -> list[list[str]]: ...


class TransformersCaptioner:
    """`num_captions` captions per image by nucleus sampling (top-p 0.9), seeded per batch."""

    def __init__(self, model: str, device: torch.device, *, num_captions: int = 3, prompt: str = "",
                 max_new_tokens: int = 30, batch_size: int = 16):  # fmt: skip
        from transformers import AutoModelForImageTextToText, AutoProcessor

        path = resolve_local_model(model, **CAPTIONER_MODEL)
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        self.processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        self.model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True, use_safetensors=True, dtype=dtype).to(device).eval()
        self.device, self.dtype = device, dtype
        self.num_captions, self.prompt, self.max_new_tokens, self.batch_size = num_captions, prompt, max_new_tokens, batch_size

    @torch.no_grad()
    def __call__(self, images: list[Image.Image], seed: int) -> list[list[str]]:
        out: list[list[str]] = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start : start + self.batch_size]
            kwargs = {"text": [self.prompt] * len(batch)} if self.prompt else {}
            inputs = self.processor(images=batch, return_tensors="pt", **kwargs).to(self.device)
            inputs = {k: v.to(self.dtype) if torch.is_floating_point(v) else v for k, v in inputs.items()}
            torch.manual_seed(seed + start)
            ids = self.model.generate(**inputs, do_sample=True, top_p=0.9, num_return_sequences=self.num_captions,
                                      max_new_tokens=self.max_new_tokens)  # fmt: skip
            prompt_ids = inputs.get("input_ids")
            if prompt_ids is not None and ids.shape[1] >= prompt_ids.shape[1]:
                expanded = prompt_ids.repeat_interleave(self.num_captions, dim=0)
                if torch.equal(ids[:, : expanded.shape[1]].cpu(), expanded.cpu()):  # decoder-only models echo the prompt
                    ids = ids[:, expanded.shape[1] :]
            texts = [self._clean(t) for t in self.processor.batch_decode(ids, skip_special_tokens=True)]
            out.extend(texts[i * self.num_captions : (i + 1) * self.num_captions] for i in range(len(batch)))
        return out

    def _clean(self, text: str) -> str:
        text = " ".join(text.split())
        if self.prompt and text.lower().startswith(self.prompt.strip().lower()):
            text = text[len(self.prompt.strip()) :].strip()
        return text


def build_captioner(name: str, hp: dict, device: torch.device) -> Captioner | None:
    """The captioner `name` configured from `hp`; None for `none`."""
    if name == "none":
        return None
    if name == "transformers":
        return TransformersCaptioner(hp["captioner_model"], device, num_captions=hp["num_captions"], prompt=hp["captioner_prompt"],
                                     max_new_tokens=hp["caption_max_tokens"], batch_size=hp["gen_batch_size"])  # fmt: skip
    raise ConfigError(f"hyperparameter 'captioner': unknown captioner '{name}'; valid: {', '.join(CAPTIONERS)} (or auto)")


def to_pil(image: torch.Tensor) -> Image.Image:
    """uint8 (C, H, W) -> an RGB PIL image (grey images are repeated over three channels)."""
    arr = image.permute(1, 2, 0).numpy()
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")
