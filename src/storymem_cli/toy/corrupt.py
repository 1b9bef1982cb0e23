"""Corruptions that imitate an imperfect generator, for testing the detector's tolerance.

Each takes a (F, H, W, 3) uint8 clip and a numpy Generator and returns a new clip.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def gaussian_noise(clip: np.ndarray, rng: np.random.Generator, sigma: float = 15.0) -> np.ndarray:
    """Independent per-pixel noise, ``sigma`` in 0-255 units."""
    return np.clip(clip + rng.normal(0.0, sigma, clip.shape), 0, 255).astype(np.uint8)


def blur(clip: np.ndarray, rng: np.random.Generator, sigma: float = 1.0) -> np.ndarray:
    """Separable Gaussian blur over height and width (``sigma`` in pixels)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    out = clip.astype(np.float32)
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (radius, radius)
        p = np.pad(out, pad, mode="edge")
        n = out.shape[axis]
        out = sum(w * np.take(p, np.arange(i, i + n), axis=axis) for i, w in enumerate(k))
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def colour_shift(clip: np.ndarray, rng: np.random.Generator, amount: float = 12.0) -> np.ndarray:
    """A per-channel offset in [-amount, amount] and gain in [0.93, 1.07], one per clip."""
    offset = rng.uniform(-amount, amount, 3)
    gain = rng.uniform(0.93, 1.07, 3)
    return np.clip(clip * gain + offset, 0, 255).astype(np.uint8)


def downscale_upscale(clip: np.ndarray, rng: np.random.Generator, factor: int = 2) -> np.ndarray:
    """Average-pool by ``factor`` then nearest-neighbour upscale: lost detail, blocky edges."""
    f, h, w, c = clip.shape
    small = clip.reshape(f, h // factor, factor, w // factor, factor, c).astype(np.float32).mean(axis=(2, 4))
    return np.repeat(np.repeat(small, factor, axis=1), factor, axis=2).round().astype(np.uint8)


CORRUPTIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "noise": gaussian_noise,
    "blur": blur,
    "colour_shift": colour_shift,
    "downscale": downscale_upscale,
}


def all_at_once(clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Every corruption in turn, milder: blur, downscale, colour shift, then noise."""
    clip = blur(clip, rng, sigma=0.7)
    clip = downscale_upscale(clip, rng)
    clip = colour_shift(clip, rng, amount=8.0)
    return gaussian_noise(clip, rng, sigma=10.0)


CORRUPTIONS["combined"] = all_at_once
