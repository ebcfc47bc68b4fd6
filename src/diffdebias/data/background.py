"""Background Fashion-MNIST: each garment on a background texture tied to its class (a Waterbirds-like bias).

The bias b of a sample is the index of its texture family in :data:`TEXTURE_NAMES`; class c is
aligned with family c. Every sample draws its own phase, offset and period jitter, so a family is
a family of textures, not one image. The garment is composited over the texture with its grey
level as alpha (ramping to 1 at :data:`ALPHA_RAMP`): pixels of grey level >= ALPHA_RAMP keep their
exact value, the empty background shows the texture (two grey levels). Images have 3 identical
(grey) channels, so only the texture carries the bias. Train / val / test follow
:func:`~diffdebias.data.injected.build_injected`.

``texture_contrast`` (option, default 100) is the texture's peak-to-peak amplitude in grey levels
around :data:`TEXTURE_LEVEL`: the texture's two grey levels are 15 and 75 by default (dark, so the
garment's silhouette stays visible).
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Real
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import ConfigError
from .base import BiasedDataset
from .colored import FMNIST_CLASSES, FMNIST_FILES, RATIOS, SPEC
from .idx import load_mnist_like
from .injected import build_injected, protocol_settings
from .registry import register_dataset

RENDER_VERSION = 1  # bump when a texture's output changes: cached builds are then rebuilt
BACKGROUND_OPTIONS = {"seed": 0, "val_mode": "heldout", "val_fraction": 0.1, "texture_contrast": 60, "cache": True, "bias_mode": "class"}
TEXTURE_LEVEL = 45.0  # mean of the texture's two grey levels
MAX_CONTRAST = 2 * TEXTURE_LEVEL  # keeps the dark level >= 0
ALPHA_RAMP = 32.0  # garment grey levels from here up are opaque (kept exactly)
JITTER = 0.15  # relative period jitter per sample
SIZE = 28
ROWS, COLS = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
Texture = Callable[[int, np.random.Generator], np.ndarray]


def _square(t: np.ndarray, duty: float = 0.5) -> np.ndarray:
    """Square wave of period 1: on for the first `duty` of each period."""
    return np.mod(t, 1.0) < duty


def _period(n: int, base: float, rng: np.random.Generator) -> np.ndarray:
    return (base * rng.uniform(1 - JITTER, 1 + JITTER, (n, 1, 1))).astype(np.float32)


def _phase(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.random((n, 1, 1), dtype=np.float32)


def _stripes(direction: tuple[float, float], base: float) -> Texture:
    """Stripes whose normal is (rows, cols) `direction`, period `base` pixels along it."""
    d = np.hypot(*direction)
    along = (direction[0] * ROWS + direction[1] * COLS) / d
    return lambda n, rng: _square(along / _period(n, base, rng) + _phase(n, rng))


def _checker(n: int, rng: np.random.Generator) -> np.ndarray:
    t = _period(n, 8.0, rng)
    return _square(ROWS / t + _phase(n, rng)) ^ _square(COLS / t + _phase(n, rng))


def _dots(n: int, rng: np.random.Generator) -> np.ndarray:
    t = _period(n, 7.0, rng)
    di = np.mod(ROWS / t + _phase(n, rng), 1.0) - 0.5
    dj = np.mod(COLS / t + _phase(n, rng), 1.0) - 0.5
    return di**2 + dj**2 < 0.3**2


def _rings(n: int, rng: np.random.Generator) -> np.ndarray:
    centre = rng.uniform(0, SIZE, (2, n, 1, 1)).astype(np.float32)
    radius = np.hypot(ROWS - centre[0], COLS - centre[1])
    return _square(radius / _period(n, 6.0, rng) + _phase(n, rng))


def _fine_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.random((n, SIZE, SIZE), dtype=np.float32) < 0.5


def _blobs(n: int, rng: np.random.Generator) -> np.ndarray:
    coarse = rng.random((n, 5, 5), dtype=np.float32)
    return ndimage.zoom(coarse, (1, SIZE / 5, SIZE / 5), order=1, grid_mode=True, mode="nearest") > 0.5


def _crosshatch(n: int, rng: np.random.Generator) -> np.ndarray:
    up, down = (ROWS + COLS) / np.sqrt(2), (ROWS - COLS) / np.sqrt(2)
    t = _period(n, 7.0, rng)
    return _square(up / t + _phase(n, rng), 0.3) | _square(down / t + _phase(n, rng), 0.3)


TEXTURES: dict[str, Texture] = {
    "hstripes": _stripes((1.0, 0.0), 6.0),
    "vstripes": _stripes((0.0, 1.0), 6.0),
    "diag_up": _stripes((1.0, 1.0), 6.0),  # lines like '/'
    "diag_down": _stripes((1.0, -1.0), 6.0),  # lines like '\'
    "checker": _checker,
    "dots": _dots,
    "rings": _rings,
    "fine_noise": _fine_noise,
    "blobs": _blobs,
    "crosshatch": _crosshatch,
}
TEXTURE_NAMES = list(TEXTURES)


def textures(b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """bool (N, 28, 28) two-tone backgrounds (True = light): texture family b[i]."""
    out = np.empty((len(b), SIZE, SIZE), dtype=bool)
    for k, fn in enumerate(TEXTURES.values()):
        members = np.flatnonzero(b == k)
        if len(members):
            out[members] = fn(len(members), rng)
    return out


def texture_levels(contrast: float) -> tuple[float, float]:
    """The dark and light grey levels of the texture."""
    return TEXTURE_LEVEL - contrast / 2, TEXTURE_LEVEL + contrast / 2


def composite_table(contrast: float) -> np.ndarray:
    """uint8 (2, 256): pixel value for (dark/light texture, garment grey level)."""
    g = np.arange(256, dtype=np.float64)
    alpha = np.minimum(g / ALPHA_RAMP, 1.0)
    levels = np.array(texture_levels(contrast))[:, None]
    return np.clip(np.rint(alpha * g + (1.0 - alpha) * levels), 0, 255).astype(np.uint8)


def render_background(gray: np.ndarray, b: np.ndarray, rng: np.random.Generator, contrast: float) -> np.ndarray:
    """uint8 (N, 28, 28) garments -> uint8 (N, 3, 28, 28) grey images, garment i over a texture of family b[i]."""
    out = composite_table(contrast)[textures(b, rng).view(np.uint8), gray]
    return np.ascontiguousarray(np.broadcast_to(out[:, None], (len(out), SPEC.channels, SIZE, SIZE)))


def _contrast(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value <= MAX_CONTRAST:
        raise ConfigError(f"dataset '{name}' option 'texture_contrast' must be a number in (0, {MAX_CONTRAST:g}] (grey levels), got {value!r}")
    return float(value)


@register_dataset(
    "background_fmnist",
    description="Fashion-MNIST garments on one background texture family per class (Waterbirds-like); bias = background texture",
    **FMNIST_FILES,
    ratios=RATIOS,
    default_ratio=1.0,
    any_ratio=True,
    options=BACKGROUND_OPTIONS,
)
def background_fmnist(root: Path, ratio: float, **opts) -> BiasedDataset:
    contrast = _contrast("background_fmnist", opts["texture_contrast"])
    return build_injected(
        "background_fmnist",
        load_mnist_like(root),
        lambda x, b, rng: render_background(x, b, rng, contrast),
        {
            "bias": "background texture",
            "texture_contrast": contrast,
            "texture_levels": list(texture_levels(contrast)),
            "alpha_ramp": ALPHA_RAMP,
            "textures": TEXTURE_NAMES,
            "render_version": RENDER_VERSION,
        },
        num_bias=len(TEXTURES),
        ratio=ratio,
        spec=SPEC,
        class_names=FMNIST_CLASSES,
        bias_names=TEXTURE_NAMES,
        **protocol_settings(opts),
    )
