"""Class-conditional UNet presets: diffusers' UNet2DModel with one extra "null" class."""

from __future__ import annotations

from typing import Any

from diffusers import UNet2DModel

from ..errors import ConfigError

PRESETS: dict[str, dict[str, Any]] = {
    # About 1.05M parameters; ~100 img/s training at 28 px on 2 CPU cores (batch 32).
    "cpu-tiny": {
        "block_out_channels": (32, 64, 64),
        "layers_per_block": 1,
        "down_block_types": ("DownBlock2D",) * 3,
        "up_block_types": ("UpBlock2D",) * 3,
        "norm_num_groups": 8,
        "add_attention": False,
        "dropout": 0.0,
    },
    # DDB's reference UNet (ch 128, mult 1,2,2,2, 2 res blocks, dropout 0.15, attention at 16 px
    # for 64 px inputs), for GPU users.
    "paper": {
        "block_out_channels": (128, 256, 256, 256),
        "layers_per_block": 2,
        "down_block_types": ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        "norm_num_groups": 32,
        "add_attention": True,
        "dropout": 0.15,
    },
}


def size_factor(preset: str) -> int:
    """What an image size must be a multiple of for `preset`'s UNet (2 per down-sampling)."""
    return 2 ** (len(_preset(preset)["block_out_channels"]) - 1)


def check_image_size(preset: str, size: int) -> None:
    """Refuse an image size that `preset`'s UNet cannot down- and up-sample back to itself."""
    f = size_factor(preset)
    if size % f:
        lo, hi = size // f * f, (size // f + 1) * f
        near = f"{lo} or {hi}" if lo else str(hi)
        raise ConfigError(f"image_size: the '{preset}' UNet halves images {f.bit_length() - 1} times, so their size must be a multiple of {f}; "
                          f"{size} px is not: set image_size={near} (images are resized), or another preset")


def _preset(preset: str) -> dict[str, Any]:
    if preset not in PRESETS:
        raise ConfigError(f"unknown diffusion preset '{preset}'; valid: {', '.join(PRESETS)}")
    return PRESETS[preset]


def build_unet(preset: str, num_classes: int, channels: int, image_size: int) -> UNet2DModel:
    """A randomly initialised UNet; class index `num_classes` is the null (unconditional) label."""
    return UNet2DModel(
        sample_size=image_size,
        in_channels=channels,
        out_channels=channels,
        num_class_embeds=num_classes + 1,
        **_preset(preset),
    )
