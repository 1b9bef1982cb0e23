"""Read a toy clip back: the character's colour and shape, and the setting.

Built from the world's own rules (world.py), not learned:

1. Smooth the frame with a 3x3 box filter, which divides pixel noise by three.
2. Character pixels are the saturated ones: chroma (max - min channel) above the
   midpoint between the least saturated body colour and the most saturated
   setting colour. Accessories and eyes are neutral, so they drop out.
3. Colour: each character pixel votes for the body colour nearest in hue; the
   clip's colour is the most voted one over all frames.
4. Shape: the pixels of that colour are cleaned (3x3 opening), their holes
   (eye, glasses) filled row- and column-wise (every body's rows and
   columns are intervals), and the result is compared, by IoU inside its
   bounding box, with each shape drawn by the renderer's own ``shape_mask`` at
   that box. IoUs are summed over frames; frames where the body is too small or
   too thin (mid-turn) do not vote.
5. Setting: median colours of a sky band and a ground band, without character
   pixels, compared with the same features of backgrounds the renderer draws
   for each setting (nearest in RGB).

Robust to what a trained toy model gets wrong: noise, blur, slight colour
shifts, a lower resolution (see tests/toy/test_detect.py for the measured rates).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import product

import numpy as np

from storymem_cli.toy.render import render_background, shape_mask
from storymem_cli.toy.world import (
    CHARACTER_CHROMA_MIN,
    COLOURS,
    FRAME_SIZE,
    SETTING_CHROMA_MAX,
    SETTINGS,
    SHAPES,
)

CHROMA_THRESHOLD = (CHARACTER_CHROMA_MIN + SETTING_CHROMA_MAX) / 2  # midway between body and setting colours
WEAK_CHROMA_THRESHOLD = 100  # next to a body pixel, this saturated is still body (its edge, blurred)
MIN_NEIGHBOURS = 4  # a body pixel has at least 4 body pixels in its 3x3 block (itself included)
MIN_BODY_PIXELS = 6  # fewer coloured pixels than this in a frame: no character in it
BOX_GROWTH = 1  # pixels a shape's box may grow per side to make up for faded tips
MIN_BOX_SIDE = 3  # a body box thinner than this (mid-turn, far shrunk) says nothing about shape
SKY_BAND = (0.0, 9.0)  # world rows above the characters (only a jumping hat reaches in: the median ignores it)
GROUND_BAND = (57.0, 64.0)  # world rows below every character's feet (world.GROUND_ROW = 54)
SHAPE_FRAME_STRIDE = 2  # shape votes from every other frame: neighbours add little
SETTING_FRAME_STRIDE = 4  # settings do not move
_REFERENCE_SEEDS = 16  # backgrounds per setting averaged into its reference features


@dataclass(frozen=True)
class Detection:
    """What a clip shows, as read by the detector. colour / shape are None when no character
    is visible; ``body_fraction`` is the share of frames in which one was found."""

    colour: str | None
    shape: str | None
    setting: str
    body_fraction: float
    shape_scores: dict[str, float]  # mean IoU per shape over the frames that voted


def _box3(a: np.ndarray, reduce) -> np.ndarray:
    """3x3 neighbourhood reduction over axes 1, 2 of (F, H, W, ...) with edge padding."""
    pad = [(0, 0), (1, 1), (1, 1)] + [(0, 0)] * (a.ndim - 3)
    p = np.pad(a, pad, mode="edge")
    h, w = a.shape[1], a.shape[2]
    views = [p[:, i : i + h, j : j + w] for i in range(3) for j in range(3)]
    return reduce(views)


def _smooth(frames: np.ndarray) -> np.ndarray:
    return _box3(frames.astype(np.float32), lambda vs: sum(vs) / 9.0)


def _hue(rgb: np.ndarray) -> np.ndarray:
    """Hue in degrees of (..., 3) float RGB."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return np.degrees(np.arctan2(np.sqrt(3.0) * (g - b), 2.0 * r - g - b)) % 360.0


_COLOUR_NAMES = tuple(COLOURS)
_COLOUR_HUES = _hue(np.asarray([COLOURS[c] for c in _COLOUR_NAMES], dtype=np.float32))


def _nearest_colour(rgb: np.ndarray) -> np.ndarray:
    """Index into _COLOUR_NAMES of the body colour nearest in hue, per pixel."""
    d = np.abs(_hue(rgb)[..., None] - _COLOUR_HUES)
    return np.argmin(np.minimum(d, 360.0 - d), axis=-1)


def _fill_intervals(mask: np.ndarray) -> np.ndarray:
    """Fill each row, then each column, between its first and last set pixel."""

    def rows(m: np.ndarray) -> np.ndarray:
        idx = np.arange(m.shape[1])
        any_ = m.any(axis=1)
        first = np.where(any_, m.argmax(axis=1), m.shape[1])
        last = np.where(any_, m.shape[1] - 1 - m[:, ::-1].argmax(axis=1), -1)
        return (idx[None] >= first[:, None]) & (idx[None] <= last[:, None])

    return rows(rows(mask).T).T


def _shape_ious(body: np.ndarray) -> np.ndarray | None:
    """Best IoU of a (H, W) body mask with each shape drawn in its bounding box, or None.

    Thin tips (a diamond's corners, a triangle's apex) fade below the chroma
    threshold under blur, so each shape is also tried in boxes grown by up to
    ``BOX_GROWTH`` pixels per side, and its best fit counts."""
    ys, xs = np.nonzero(body)
    if ys.size < MIN_BODY_PIXELS:
        return None
    r0, r1, c0, c1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    h, w = r1 - r0, c1 - c0
    if min(h, w) < MIN_BOX_SIDE:
        return None
    g = BOX_GROWTH
    crop = np.zeros((h + 2 * g, w + 2 * g), dtype=bool)
    crop[g : g + h, g : g + w] = _fill_intervals(body[r0:r1, c0:c1])
    v, u = _grown_box_coords(h, w)
    ious = []
    for shape in SHAPES:
        t = shape_mask(shape, u, v)  # (variants, H + 2g, W + 2g)
        ious.append(((crop & t).sum(axis=(1, 2)) / np.maximum((crop | t).sum(axis=(1, 2)), 1)).max())
    return np.asarray(ious)


@lru_cache(maxsize=1024)
def _grown_box_coords(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit coordinates v (variants, H+2g, 1) and u (variants, 1, W+2g) of every grown box:
    top and bottom grow independently, the sides together; inf outside the box."""
    g = BOX_GROWTH
    variants = list(product(range(g + 1), range(g + 1), range(g + 1)))
    v = np.full((len(variants), h + 2 * g, 1), np.inf)
    u = np.full((len(variants), 1, w + 2 * g), np.inf)
    for k, (top, bottom, side) in enumerate(variants):
        hh, ww = h + top + bottom, w + 2 * side
        v[k, g - top : g - top + hh, 0] = (np.arange(hh) + 0.5) / hh * 2.0 - 1.0
        u[k, 0, g - side : g - side + ww] = (np.arange(ww) + 0.5) / ww * 2.0 - 1.0
    return v, u


def _band(size: int, band: tuple[float, float]) -> slice:
    return slice(round(band[0] * size / FRAME_SIZE), round(band[1] * size / FRAME_SIZE))


def _setting_features(smooth: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    """(F, 6): median RGB of the sky band and of the ground band, character pixels left out."""
    size = smooth.shape[1]
    feats = []
    for f in range(smooth.shape[0]):
        parts = []
        for band in (SKY_BAND, GROUND_BAND):
            rows = _band(size, band)
            px = smooth[f, rows][~exclude[f, rows]]
            if px.shape[0] == 0:
                px = smooth[f, rows].reshape(-1, 3)
            parts.append(np.median(px, axis=0))
        feats.append(np.concatenate(parts))
    return np.asarray(feats)


@lru_cache(maxsize=4)
def setting_references(size: int = FRAME_SIZE) -> np.ndarray:
    """(len(SETTINGS), 6) features of backgrounds the renderer draws, averaged over fixed seeds."""
    refs = []
    for name in SETTINGS:
        bgs = np.stack([render_background(name, seed, size) for seed in range(_REFERENCE_SEEDS)])
        smooth = _smooth(bgs)
        refs.append(_setting_features(smooth, np.zeros(bgs.shape[:3], dtype=bool)).mean(axis=0))
    return np.asarray(refs)


def _body_mask(frames: np.ndarray, colour_idx: int) -> np.ndarray:
    """(F, H, W) pixels of the body colour, from the unsmoothed frames: smoothing would
    round the outline (a cross's inner corners) that tells shapes apart."""
    raw = frames.astype(np.float32)
    chroma = raw.max(axis=-1) - raw.min(axis=-1)
    same = np.zeros(chroma.shape, dtype=bool)
    candidate = chroma > WEAK_CHROMA_THRESHOLD
    same[candidate] = _nearest_colour(raw[candidate]) == colour_idx
    strong = same & (chroma > CHROMA_THRESHOLD)
    # A blurred outline is less saturated; keep such pixels next to certain ones.
    strong |= same & _box3(strong, np.logical_or.reduce)
    # Noise leaves specks of body colour; a body pixel has body pixels around it.
    return strong & (_box3(strong.astype(np.int8), sum) >= MIN_NEIGHBOURS)


def detect_clip(frames: np.ndarray) -> Detection:
    """Read the character's colour and shape and the setting of a (F, H, W, 3) uint8 clip
    (or a single (H, W, 3) frame)."""
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[1] != frames.shape[2]:
        raise ValueError(f"expected square RGB frames (F, H, W, 3), got shape {frames.shape}")
    smooth = _smooth(frames)
    chroma = smooth.max(axis=-1) - smooth.min(axis=-1)
    coloured = chroma > CHROMA_THRESHOLD
    candidate = chroma > WEAK_CHROMA_THRESHOLD
    nearest = np.full(chroma.shape, -1)
    nearest[candidate] = _nearest_colour(smooth[candidate])

    votes = np.bincount(nearest[coloured], minlength=len(_COLOUR_NAMES))
    colour_idx = int(votes.argmax()) if votes.sum() >= MIN_BODY_PIXELS else None

    shape_sum = np.zeros(len(SHAPES))
    voters = 0
    with_body = 0
    if colour_idx is not None:
        body = _body_mask(frames, colour_idx)
        for f in range(frames.shape[0]):
            if body[f].sum() >= MIN_BODY_PIXELS:
                with_body += 1
            if f % SHAPE_FRAME_STRIDE:
                continue
            ious = _shape_ious(body[f])
            if ious is not None:
                shape_sum += ious
                voters += 1

    exclude = _box3(coloured, np.logical_or.reduce)
    feats = np.median(_setting_features(smooth[::SETTING_FRAME_STRIDE], exclude[::SETTING_FRAME_STRIDE]), axis=0)
    refs = setting_references(frames.shape[1])
    setting = list(SETTINGS)[int(np.argmin(((refs - feats) ** 2).sum(axis=1)))]

    return Detection(
        colour=_COLOUR_NAMES[colour_idx] if colour_idx is not None else None,
        shape=SHAPES[int(shape_sum.argmax())] if voters else None,
        setting=setting,
        body_fraction=with_body / frames.shape[0],
        shape_scores={s: float(x / voters) if voters else 0.0 for s, x in zip(SHAPES, shape_sum)},
    )
