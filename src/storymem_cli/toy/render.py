"""Procedural clips of the toy world, vectorised with numpy and deterministic from a seed.

Geometry is written in *world units*: the frame is 64 units wide and high whatever
its pixel size, so ``size=128`` renders the same scene at twice the resolution.
A clip is a background (sky gradient, ground band, props) drawn once, broadcast to
every frame, with the character composited per frame from per-frame motion
parameters (centre, half-sizes, facing) evaluated on the whole (F, H, W) grid at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from storymem_cli.toy.world import (
    BOW_RGB,
    CLIP_FRAMES,
    COLOURS,
    EYE_RGB,
    FRAME_SIZE,
    GLASSES_RGB,
    GROUND_ROW,
    HAT_RGB,
    SETTINGS,
    Setting,
    Shot,
)

WORLD = float(FRAME_SIZE)  # world units across the frame

SeedLike = int | np.random.Generator


def _rng(seed: SeedLike) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in world units: x of shape (1, size), y of shape (size, 1)."""
    c = (np.arange(size, dtype=np.float32) + 0.5) * (WORLD / size)
    return c[None, :], c[:, None]


# ---------------------------------------------------------------- character geometry


CROSS_ARM = 0.4  # half-width of the cross's arms (unit box): thick enough to survive blur


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Body of ``shape`` in unit coordinates: the shape fills the box |u| <= 1, |v| <= 1 (v down)."""
    au, av = np.abs(u), np.abs(v)
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return (au <= 1.0) & (av <= 1.0)
    if shape == "diamond":
        return au + av <= 1.0
    if shape == "triangle":  # apex up, base down
        return (av <= 1.0) & (au <= (v + 1.0) * 0.5)
    if shape == "cross":
        arm = CROSS_ARM
        return ((au <= arm) & (av <= 1.0)) | ((av <= arm) & (au <= 1.0))
    raise ValueError(f"unknown shape {shape!r}")


# Where the eye / glasses sit (u offset from the centre, v row, radius), chosen so they
# stay inside the body, away from its outline: the silhouette is what the detector reads.
_FACE = {
    "circle": (0.4, -0.3, 0.2),
    "square": (0.4, -0.3, 0.2),
    "triangle": (0.28, 0.4, 0.18),
    "diamond": (0.32, -0.1, 0.18),
    "cross": (0.2, 0.0, 0.17),  # in the centre square: an eye in an arm would cut it in two
}


def _disc(u: np.ndarray, v: np.ndarray, cu, cv: float, r: float) -> np.ndarray:
    return (u - cu) ** 2 + (v - cv) ** 2 <= r * r


def character_layers(
    shape: str, accessory: str, u: np.ndarray, v: np.ndarray, facing: np.ndarray
) -> list[tuple[np.ndarray, tuple[int, int, int] | None]]:
    """Masks to paint in order; colour None means the body colour. ``facing`` is +1 / -1,
    broadcastable to ``u``. Accessories sit above the body or inside the face, so the
    outline of the body stays whole."""
    body = shape_mask(shape, u, v)
    fu, fv, r = _FACE[shape]
    layers: list[tuple[np.ndarray, tuple[int, int, int] | None]] = [(body, None)]
    if accessory == "glasses":
        glasses = _disc(u, v, fu, fv, r) | _disc(u, v, -fu, fv, r)
        glasses |= (np.abs(u) <= fu) & (np.abs(v - fv) <= 0.07)
        layers.append((body & glasses, GLASSES_RGB))
    else:
        layers.append((body & _disc(u, v, facing * fu, fv, r), EYE_RGB))
    if accessory == "hat":
        crown = (np.abs(u) <= 0.45) & (v >= -1.8) & (v <= -0.95)
        brim = (np.abs(u) <= 0.8) & (v >= -1.08) & (v <= -0.92)
        layers.append((crown | brim, HAT_RGB))
    if accessory == "bow":  # two triangles meeting above the head
        bow = (v >= -1.55) & (v <= -0.95) & (np.abs(v + 1.25) <= 0.5 * np.abs(u)) & (np.abs(u) <= 0.65)
        bow |= (np.abs(u) <= 0.12) & (np.abs(v + 1.25) <= 0.12)
        layers.append((bow, BOW_RGB))
    return layers


# ---------------------------------------------------------------- motion


@dataclass(frozen=True)
class Motion:
    """Per-frame character placement in world units, each array of shape (F,)."""

    cx: np.ndarray
    cy: np.ndarray
    sx: np.ndarray  # half-width
    sy: np.ndarray  # half-height
    facing: np.ndarray  # +1 looks right, -1 looks left


def _smoothstep(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)


@dataclass(frozen=True)
class MotionStyle:
    """How far each action moves and deforms the body. ``WORLD_MOTION`` is the toy world's; the
    experiments' worlds (``benchmarks/toy_world_variants.py``) are other rows of the same table,
    and every row draws the same random numbers in the same order."""

    hop: tuple[str, float, float]  # ("lift", lo, hi): lo-hi units off the ground; ("stretch", lo, hi): 1+lo-hi times taller, as much thinner
    jump: tuple[str, float, float]  # the same, for the one long jump
    walk_bob: float  # units of lift per step
    turn_floor: float  # the narrowest a turning body gets, as a share of its width
    grow: float  # final size over the starting size, minus 1
    shrink: float  # 1 minus the final size over the starting size
    margin_from_width: bool  # keep the body's widest point inside the frame (else its tallest)


# Hops and jumps lift the body off the ground, walks bob, turns squash it to a sliver, grow and
# shrink scale it by 1.45 and 0.6: the world the shipped toy model trained on. A world whose bodies
# keep to the ground teaches a small transformer shapes faster on single frames, but not within
# the full recipe's budget (docs/training.md; benchmarks/toy_world_variants.py, ``stretch``).
WORLD_MOTION = MotionStyle(hop=("lift", 8.0, 12.0), jump=("lift", 12.0, 16.0), walk_bob=1.0,
                           turn_floor=0.12, grow=0.45, shrink=0.4, margin_from_width=False)  # fmt: skip


def motion(action: str, rng: np.random.Generator, frames: int = CLIP_FRAMES, style: MotionStyle = WORLD_MOTION) -> Motion:
    """The motion of ``action`` with a random start, size and amplitude, as ``style`` moves bodies."""
    t = np.linspace(0.0, 1.0, frames, dtype=np.float32)
    s0 = rng.uniform(13.5, 16.5)  # half-height: at 32x32 a body is ~15 px, 3-4 latent pixels of the 4x VAE
    scale = np.ones_like(t)
    stretch = np.ones_like(t)  # height x stretch, width / stretch: the same area, taller and thinner
    squash = np.ones_like(t)  # width only: a turn seen edge-on
    lift = np.zeros_like(t)
    dx = np.zeros_like(t)
    facing = np.full_like(t, 1.0 if rng.random() < 0.5 else -1.0)

    def bounce(kind_lo_hi: tuple[str, float, float], wave: np.ndarray) -> None:
        nonlocal lift, stretch
        kind, lo, hi = kind_lo_hi
        if kind == "lift":
            lift = rng.uniform(lo, hi) * wave
        else:
            stretch = 1.0 + rng.uniform(lo, hi) * wave

    if action in ("walk_left", "walk_right"):
        dx = rng.uniform(20.0, 28.0) * t
        lift = style.walk_bob * np.abs(np.sin(4.0 * np.pi * t))  # a small step bob
    elif action in ("hop_left", "hop_right"):
        dx = rng.uniform(18.0, 26.0) * t
        bounce(style.hop, np.abs(np.sin(2.0 * np.pi * t)))  # two hops
    elif action == "jump":
        bounce(style.jump, np.sin(np.pi * t))  # one long one
    elif action == "turn":
        squash = np.maximum(np.abs(np.cos(np.pi * t)), style.turn_floor)
        facing = np.where(t < 0.5, facing, -facing)
    elif action == "grow":
        scale = 1.0 + style.grow * _smoothstep(t)
    elif action == "shrink":
        scale = 1.0 - style.shrink * _smoothstep(t)
    else:
        raise ValueError(f"unknown action {action!r}")
    if action.endswith("_left"):
        dx, facing = -dx, np.full_like(t, -1.0)
    elif action.endswith("_right"):
        facing = np.full_like(t, 1.0)

    sy = s0 * scale * stretch
    sx = s0 * scale / stretch * squash
    margin = float((sx if style.margin_from_width else sy).max()) + 1.0
    lo, hi = margin - float(dx.min()), WORLD - margin - float(dx.max())
    x0 = rng.uniform(lo, hi)
    cy = GROUND_ROW - sy - lift
    return Motion(cx=(x0 + dx).astype(np.float32), cy=cy.astype(np.float32),
                  sx=sx.astype(np.float32), sy=sy.astype(np.float32), facing=facing.astype(np.float32))


def draw_character(frames: np.ndarray, shape: str, colour: str, accessory: str, m: Motion) -> None:
    """Paint the character onto ``frames`` (F, H, W, 3) uint8, in place."""
    size = frames.shape[1]
    x, y = _grid(size)
    u = (x[None] - m.cx[:, None, None]) / m.sx[:, None, None]
    v = (y[None] - m.cy[:, None, None]) / m.sy[:, None, None]
    for mask, rgb in character_layers(shape, accessory, u, v, m.facing[:, None, None]):
        frames[mask] = COLOURS[colour] if rgb is None else rgb


# ---------------------------------------------------------------- settings


def _paint(img: np.ndarray, mask: np.ndarray, rgb) -> None:
    img[mask] = rgb


def _prop_sun(img, s: Setting, rng, x, y) -> None:
    cx, cy, r = rng.uniform(8, 56), rng.uniform(4, 8), rng.uniform(3.0, 4.5)
    _paint(img, (x - cx) ** 2 + (y - cy) ** 2 <= r * r, s.accent_rgb)


def _prop_sea(img, s: Setting, rng, x, y) -> None:
    top = s.horizon - rng.uniform(4, 6)
    wave = 0.7 * np.sin(x * 0.6 + rng.uniform(0, 6.3))
    _paint(img, (y >= top + wave) & (y < s.horizon + 2), s.prop_rgb)


def _prop_trees(img, s: Setting, rng, x, y) -> None:
    for _ in range(rng.integers(3, 6)):
        tx, h, r = rng.uniform(2, 62), rng.uniform(6, 12), rng.uniform(4, 6.5)
        _paint(img, (np.abs(x - tx) <= 1.2) & (y >= s.horizon - h) & (y <= s.horizon + 3), s.accent_rgb)
        _paint(img, (x - tx) ** 2 + (y - (s.horizon - h - r * 0.6)) ** 2 <= r * r, s.prop_rgb)


def _prop_cacti(img, s: Setting, rng, x, y) -> None:
    for _ in range(rng.integers(2, 4)):
        tx, h = rng.uniform(4, 60), rng.uniform(9, 15)
        base = s.horizon + 2
        stem = (np.abs(x - tx) <= 1.5) & (y >= base - h) & (y <= base)
        arm_y = base - h * 0.6
        arms = (np.abs(y - arm_y) <= 1.0) & (np.abs(x - tx) <= 4.0)
        tips = (np.abs(np.abs(x - tx) - 4.0) <= 1.0) & (y >= arm_y - 4) & (y <= arm_y)
        _paint(img, stem | arms | tips, s.prop_rgb)


def _prop_pines(img, s: Setting, rng, x, y) -> None:
    for _ in range(rng.integers(3, 6)):
        tx, h, w = rng.uniform(2, 62), rng.uniform(10, 18), rng.uniform(3.5, 5.5)
        top = s.horizon + 1 - h
        _paint(img, (y >= top) & (y <= s.horizon + 1) & (np.abs(x - tx) <= w * (y - top) / h), s.prop_rgb)


def _prop_flakes(img, s: Setting, rng, x, y) -> None:
    n = int(rng.integers(15, 30))
    fx, fy = rng.uniform(0, 64, n), rng.uniform(0, s.horizon, n)
    flakes = np.zeros(img.shape[:2], dtype=bool)
    for px, py in zip(fx, fy):
        flakes |= (np.abs(x - px) <= 0.6) & (np.abs(y - py) <= 0.6)
    _paint(img, flakes, s.accent_rgb)


def _prop_buildings(img, s: Setting, rng, x, y) -> None:
    left = rng.uniform(-6, 0)
    while left < 64:
        w, h = rng.uniform(7, 13), rng.uniform(12, 30)
        top = s.horizon - h
        block = (x >= left) & (x < left + w - 1) & (y >= top) & (y < s.horizon)
        _paint(img, block, s.prop_rgb)
        lit = (np.floor(x - left) % 3 == 1) & (np.floor(y - top) % 4 == 2)
        lit &= (np.sin(x * 12.9898 + y * 78.233 + left) > 0.2)  # a fixed pseudo-random pattern
        _paint(img, block & lit & (x < left + w - 2), s.accent_rgb)
        left += w


def _prop_moon(img, s: Setting, rng, x, y) -> None:
    cx, cy, r = rng.uniform(8, 56), rng.uniform(4, 8), rng.uniform(3.0, 4.0)
    moon = ((x - cx) ** 2 + (y - cy) ** 2 <= r * r) & ((x - cx - 1.5) ** 2 + (y - cy + 1) ** 2 > r * r)
    _paint(img, moon, s.accent_rgb)


def _prop_flowers(img, s: Setting, rng, x, y) -> None:
    n = int(rng.integers(15, 30))
    fx, fy = rng.uniform(0, 64, n), rng.uniform(s.horizon + 1, 64, n)
    dots = np.zeros(img.shape[:2], dtype=bool)
    for px, py in zip(fx, fy):
        dots |= (x - px) ** 2 + (y - py) ** 2 <= 0.8
    _paint(img, dots, s.prop_rgb)


def _prop_rocks(img, s: Setting, rng, x, y) -> None:
    for _ in range(rng.integers(4, 8)):  # stalactites hanging from the roof
        tx, h, w = rng.uniform(0, 64), rng.uniform(5, 10), rng.uniform(2, 4)
        _paint(img, (y <= h) & (np.abs(x - tx) <= w * (1 - y / h)), s.prop_rgb)
    for _ in range(rng.integers(2, 4)):  # boulders on the floor
        tx, ty, rx, ry = rng.uniform(0, 64), rng.uniform(s.horizon + 4, 62), rng.uniform(3, 6), rng.uniform(2, 3)
        _paint(img, ((x - tx) / rx) ** 2 + ((y - ty) / ry) ** 2 <= 1, s.accent_rgb)


_PROPS = {
    "sun": _prop_sun, "sea": _prop_sea, "trees": _prop_trees, "cacti": _prop_cacti,
    "pines": _prop_pines, "flakes": _prop_flakes, "buildings": _prop_buildings,
    "moon": _prop_moon, "flowers": _prop_flowers, "rocks": _prop_rocks,
}


def render_background(setting: str, seed: SeedLike, size: int = FRAME_SIZE, props: bool = True) -> np.ndarray:
    """One still of ``setting``: (size, size, 3) uint8."""
    s = SETTINGS[setting]
    rng = _rng(seed)
    x, y = _grid(size)
    top, bottom, ground = (np.asarray(c, dtype=np.float32) for c in (s.sky_top, s.sky_bottom, s.ground))
    a = np.clip(y / s.horizon, 0.0, 1.0)[..., None]  # (size, 1, 1)
    sky = top * (1 - a) + bottom * a
    shade = 1.0 - 0.1 * np.clip((y - s.horizon) / (WORLD - s.horizon), 0.0, 1.0)[..., None]
    img = np.where((y < s.horizon)[..., None], sky, ground * shade)
    img = np.broadcast_to(img, (size, size, 3)).round().astype(np.uint8)
    if props:
        for prop in s.props:
            _PROPS[prop](img, s, rng, x, y)
    return img


def render_clip(shot: Shot, seed: SeedLike, frames: int = CLIP_FRAMES, size: int = FRAME_SIZE) -> np.ndarray:
    """The clip ``shot`` describes: (frames, size, size, 3) uint8 RGB, a pure function of the seed."""
    rng = _rng(seed)
    background = render_background(shot.setting, rng, size)
    m = motion(shot.action, rng, frames)
    clip = np.repeat(background[None], frames, axis=0)
    ch = shot.character
    draw_character(clip, ch.shape, ch.colour, ch.accessory, m)
    return clip
