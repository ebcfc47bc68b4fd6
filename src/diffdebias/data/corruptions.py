"""Image corruptions after Hendrycks & Dietterich (CIFAR-10-C), vectorised over a whole batch.

Every function maps uint8 images (N, H, W, C), C in {1, 3}, to uint8 images of the same shape,
with ``severity`` in 1..5 and the CIFAR-10-C parameters of the reference code
(github.com/hendrycks/robustness, ``make_cifar_c.py``), used unchanged for 28px images. Results
are rounded to the nearest grey level (the reference truncates). Randomness comes only from the
``rng`` argument, so a fixed seed gives identical images.

The ten corruptions, in bias-label order: six of LfF's "type 1" list (gaussian, shot and impulse
noise; gaussian, motion and zoom blur) and four of its "type 0" list that mean something on
grayscale images and need no external files (contrast, brightness, pixelate, JPEG; frost needs
image files, snow / spatter / fog ImageMagick, OpenCV or a slow fractal, saturate is a no-op on
grayscale). Left out of "type 1": glass blur (a per-pixel Python loop), and speckle noise and
defocus blur, which a small CNN could not tell apart from shot noise and gaussian blur on
Fashion-MNIST (about half of each confused), so they made a weak bias.
"""

from __future__ import annotations

import io
from typing import Callable, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from ..errors import ConfigError

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def _param(values: Sequence, severity: int):
    if severity not in range(1, 6):
        raise ConfigError(f"corruption severity must be an integer in 1..5, got {severity!r}")
    return values[int(severity) - 1]


def _check(images: np.ndarray) -> np.ndarray:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"corruptions take uint8 images (N, H, W, C) with C in {{1, 3}}, got {images.dtype} {images.shape}")
    return images


def _to_float(images: np.ndarray) -> np.ndarray:
    return _check(images).astype(np.float32) / 255.0


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def gaussian_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Additive N(0, c) noise."""
    c = _param((0.04, 0.06, 0.08, 0.09, 0.10), severity)
    x = _to_float(images)
    return _to_uint8(x + c * rng.standard_normal(x.shape, dtype=np.float32))


def shot_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Poisson noise: Poisson(c x) / c."""
    c = _param((500, 250, 100, 75, 50), severity)
    x = _to_float(images)
    return _to_uint8(rng.poisson(x * c).astype(np.float32) / c)


def impulse_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Salt and pepper: a fraction c of the values (each channel apart) set to 0 or 1 with equal odds."""
    c = _param((0.01, 0.02, 0.03, 0.05, 0.07), severity)
    x = _to_float(images)
    flipped = rng.random(x.shape) < c
    salt = rng.random(x.shape) < 0.5
    x[flipped & salt] = 1.0
    x[flipped & ~salt] = 0.0
    return _to_uint8(x)


def gaussian_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian filter of std c pixels (edges: nearest, as skimage.filters.gaussian)."""
    c = _param((0.4, 0.6, 0.7, 0.8, 1.0), severity)
    return _to_uint8(ndimage.gaussian_filter(_to_float(images), sigma=(0, c, c, 0), mode="nearest", truncate=4.0))


def motion_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """ImageMagick's motion blur: a one-sided Gaussian-weighted line of 2 ceil(radius) + 1 taps at a
    random angle in [-45, 45) degrees per image (edges replicated).

    Severities 3 and 4 differ only in the radius, beyond the reach of the weights (sigma 2): they
    give the same images, as in the reference.
    """
    radius, sigma = _param(((6, 1.0), (6, 1.5), (6, 2.0), (8, 2.0), (9, 2.5)), severity)
    x = _to_float(images)
    n, h, w, _ = x.shape
    taps = np.arange(2 * int(np.ceil(radius)) + 1)
    weights = np.exp(-(taps**2) / (2.0 * sigma**2))
    weights /= weights.sum()
    angle = np.deg2rad(rng.uniform(-45.0, 45.0, size=n))[:, None]
    dx = np.ceil(taps * np.cos(angle) - 0.5).astype(np.int64)  # (n, taps), rounded as ImageMagick does
    dy = np.ceil(taps * np.sin(angle) - 0.5).astype(np.int64)
    batch = np.arange(n)[:, None, None]
    out = np.zeros_like(x)
    for i, weight in enumerate(weights):
        rows = np.clip(np.arange(h) + dy[:, i : i + 1], 0, h - 1)[:, :, None]
        cols = np.clip(np.arange(w) + dx[:, i : i + 1], 0, w - 1)[:, None, :]
        out += weight * x[batch, rows, cols]
    return _to_uint8(out)


def zoom_matrix(side: int, factor: float) -> np.ndarray:
    """(side, side) linear map of the reference's clipped_zoom along one axis: crop the central
    ceil(side / factor) pixels, zoom them by `factor` (scipy.ndimage.zoom, order 1), crop the centre."""
    crop = int(np.ceil(side / factor))
    top = (side - crop) // 2
    size = int(round(crop * factor))
    trim = (size - side) // 2
    coords = np.linspace(0.0, crop - 1, size)[trim : trim + side]
    lo = np.floor(coords).astype(np.int64)
    frac = coords - lo
    out = np.zeros((side, side))
    np.add.at(out, (np.arange(side), top + lo), 1.0 - frac)
    np.add.at(out, (np.arange(side), top + np.minimum(lo + 1, crop - 1)), frac)
    return out


def zoom_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Average of the image and its central zooms by factors 1, 1.01, ... (the reference's list)."""
    stop = _param((1.06, 1.11, 1.16, 1.21, 1.26), severity)
    x = _to_float(images).transpose(0, 3, 1, 2)  # (N, C, H, W): matmul over the last two axes
    h, w = x.shape[-2:]
    factors = np.arange(1.0, stop, 0.01)
    out = x.copy()
    for f in factors:
        out += zoom_matrix(h, f).astype(np.float32) @ x @ zoom_matrix(w, f).T.astype(np.float32)
    return _to_uint8((out / (len(factors) + 1)).transpose(0, 2, 3, 1))


def contrast(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Pull every channel towards its image mean: (x - m) c + m."""
    c = _param((0.75, 0.5, 0.4, 0.3, 0.15), severity)
    x = _to_float(images)
    means = x.mean(axis=(1, 2), keepdims=True)
    return _to_uint8((x - means) * c + means)


def brightness(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Add c to the HSV value (clipped at 1), hue and saturation unchanged.

    With H and S fixed, RGB is proportional to V, so this is rgb * V' / V (V = max channel);
    black pixels (V = 0, S = 0) become grey V'.
    """
    c = _param((0.05, 0.1, 0.15, 0.2, 0.3), severity)
    x = _to_float(images)
    value = x.max(axis=-1, keepdims=True)
    new_value = np.minimum(value + c, 1.0)
    scale = np.divide(new_value, value, out=np.zeros_like(value), where=value > 0)
    return _to_uint8(np.where(value > 0, x * scale, new_value))


def box_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of PIL's BOX resampling along one axis.

    Output pixel i covers [i, i + 1) * n_in / n_out (at least one pixel wide) and averages the
    input pixels whose centres fall inside.
    """
    scale = n_in / n_out
    width = max(scale, 1.0)
    centre = (np.arange(n_out)[:, None] + 0.5) * scale
    offset = (np.arange(n_in)[None, :] + 0.5 - centre) / width
    weights = ((offset >= -0.5) & (offset < 0.5)).astype(np.float64)
    return weights / weights.sum(axis=1, keepdims=True)


def pixelate(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """BOX downscale to int(side c), then BOX upscale back (PIL's resampling, as one linear map)."""
    c = _param((0.95, 0.9, 0.85, 0.75, 0.65), severity)
    h, w = images.shape[1:3]
    maps = []
    for side in (h, w):
        small = int(side * c)
        maps.append((box_resize_matrix(small, side) @ box_resize_matrix(side, small)).astype(np.float32))
    out = np.einsum("ij,njkc,lk->nilc", maps[0], _to_float(images), maps[1], optimize=True)
    return _to_uint8(out)


def jpeg_compression(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """JPEG round trip through PIL at quality c (RGB with PIL's default 4:2:0 chroma subsampling)."""
    quality = _param((80, 65, 58, 50, 40), severity)
    gray = _check(images).shape[-1] == 1
    out = np.empty_like(images)
    for i, img in enumerate(images):
        buf = io.BytesIO()
        Image.fromarray(img[:, :, 0] if gray else img).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        with Image.open(buf) as decoded:
            arr = np.asarray(decoded)
        out[i] = arr[:, :, None] if gray else arr
    return out


CORRUPTIONS: dict[str, Corruption] = {
    fn.__name__: fn
    for fn in (
        gaussian_noise,
        shot_noise,
        impulse_noise,
        gaussian_blur,
        motion_blur,
        zoom_blur,
        contrast,
        brightness,
        pixelate,
        jpeg_compression,
    )
}
CORRUPTION_ORDER: tuple[str, ...] = tuple(CORRUPTIONS)  # bias label k is corruption CORRUPTION_ORDER[k]


def corrupt_by_label(images: np.ndarray, b: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Apply corruption ``CORRUPTION_ORDER[b[i]]`` to image i of a uint8 batch (N, H, W, C)."""
    out = np.empty_like(images)
    for k in np.unique(b):
        members = np.flatnonzero(b == k)
        out[members] = CORRUPTIONS[CORRUPTION_ORDER[int(k)]](images[members], severity, rng)
    return out
