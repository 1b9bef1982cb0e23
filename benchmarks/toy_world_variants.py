"""Toy datasets whose characters move less: what the first-shot experiments in docs/training.md trained on.

    PYTHONPATH=src python benchmarks/toy_world_variants.py VARIANT --out DIR [--clips 2000 --seed 0 --size 32]

The world is the toy world (shapes, colours, accessories, settings, captions); only the character's
motion (``toy.render.motion``) is replaced, to see which of its degrees of freedom keeps a small
transformer from learning shapes:

- ``stretch``: the world of the full-recipe experiment (docs/training.md, "A world on the ground"):
  the feet never leave the ground, hops and jumps stretch the body up to 1.22 and 1.32 times taller
  (and as much thinner) instead of lifting it, walks do not bob, turns squash it to 0.4 of its width
  (the world: 0.12), grow and shrink scale it by 1.3 and 0.75 (the world: 1.45 and 0.6);
- ``grounded``: the world's actions and sizes, but the feet never leave the ground: hops and jumps
  keep their sideways move and lose their lift, and walks their bob;
- ``fixed-size``: every action as in the world, but every body starts at half-height 15 (the world
  draws 13.5-16.5); the rest of the random stream is the world's;
- ``moves-only``: as ``fixed-size``, but the body keeps its size and width: walks, hops and jumps
  move it as in the world; grow, shrink and turn leave it standing (turn still flips its eye);
- ``sizes-only``: as ``fixed-size``, but the body stays where it starts, feet on the ground: grow,
  shrink and turn change it as in the world; walks, hops and jumps leave it standing;
- ``stepped``: as ``moves-only``, but the body moves a whole token at a time: its centre snaps to x =
  16, 32 or 48 world units (as ``static-snapped``) and its lift off the ground to a multiple of 16, so
  walks, hops and jumps keep a shape on the token grid the same way in every frame;
- ``static``: no motion, half-height 15, the centre anywhere along the ground;
- ``static-snapped``: no motion, half-height 15, the centre at x = 16, 32 or 48 world units, which is
  on the edges of the toy transformer's tokens (8 pixels at 32x32), so a shape always falls on the
  token grid the same way.

The other options are toy/dataset.py's, and the result is a dataset `storymem train` reads.
"""

from __future__ import annotations

import functools
import sys

import numpy as np

from storymem_cli.toy import render

VARIANTS = ("stretch", "grounded", "fixed-size", "moves-only", "sizes-only", "stepped", "static", "static-snapped")
# ``stretch``'s row of toy.render.MotionStyle
STRETCH_MOTION = render.MotionStyle(hop=("stretch", 0.15, 0.22), jump=("stretch", 0.25, 0.32), walk_bob=0.0,
                                    turn_floor=0.4, grow=0.3, shrink=0.25, margin_from_width=True)  # fmt: skip
HALF_HEIGHT = 15.0  # the middle of the world's 13.5-16.5
TOKEN = 16.0  # world units per token of the toy transformer at 32x32 (4x VAE stride, 2x2 patches: 8 pixels)


class _FirstSizeFixed:
    """The world's generator, except that its first ``uniform`` draw (the body size in ``motion``)
    returns HALF_HEIGHT; the draw is still made, so every later number is the world's."""

    def __init__(self, rng: np.random.Generator):
        self._rng, self._first = rng, True

    def uniform(self, *args, **kwargs):
        value = self._rng.uniform(*args, **kwargs)
        if self._first:
            self._first = False
            return HALF_HEIGHT
        return value

    def __getattr__(self, name):
        return getattr(self._rng, name)


def variant_motion(variant: str):
    """A replacement for ``toy.render.motion`` that draws ``variant``'s motion."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: one of {', '.join(VARIANTS)}")

    world_motion = render.motion
    if variant == "stretch":
        return functools.partial(world_motion, style=STRETCH_MOTION)

    def motion(action: str, rng: np.random.Generator, frames: int = render.CLIP_FRAMES) -> render.Motion:
        if variant == "grounded":
            m = world_motion(action, rng, frames)
            return render.Motion(cx=m.cx, cy=render.GROUND_ROW - m.sy, sx=m.sx, sy=m.sy, facing=m.facing)
        if variant in ("fixed-size", "moves-only", "sizes-only", "stepped"):
            m = world_motion(action, _FirstSizeFixed(rng), frames)
            if variant in ("moves-only", "stepped"):
                lift, cx = render.GROUND_ROW - m.sy - m.cy, m.cx
                if variant == "stepped":
                    cx = np.clip(np.floor(cx / TOKEN + 0.5) * TOKEN, TOKEN, render.WORLD - TOKEN)
                    lift = np.floor(lift / TOKEN + 0.5) * TOKEN
                size = np.full_like(m.sy, HALF_HEIGHT)
                return render.Motion(cx=cx, cy=render.GROUND_ROW - size - lift, sx=size, sy=size, facing=m.facing)
            if variant == "sizes-only":
                cx = np.full_like(m.cx, m.cx[0])
                return render.Motion(cx=cx, cy=render.GROUND_ROW - m.sy, sx=m.sx, sy=m.sy, facing=m.facing)
            return m
        t = np.ones(frames, dtype=np.float32)
        if variant == "static":
            x0 = float(rng.uniform(HALF_HEIGHT + 1.0, render.WORLD - HALF_HEIGHT - 1.0))
        else:
            x0 = float(rng.choice([16.0, 32.0, 48.0]))
        facing = 1.0 if rng.random() < 0.5 else -1.0
        return render.Motion(cx=x0 * t, cy=(render.GROUND_ROW - HALF_HEIGHT) * t, sx=HALF_HEIGHT * t,
                             sy=HALF_HEIGHT * t, facing=facing * t)  # fmt: skip

    return motion


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in VARIANTS:
        raise SystemExit(f"usage: toy_world_variants.py {{{','.join(VARIANTS)}}} --out DIR [toy/dataset.py options]")
    from storymem_cli.toy import dataset

    render.motion = variant_motion(sys.argv[1])  # render_clip looks motion up in its module at each call
    sys.argv = [sys.argv[0], *sys.argv[2:]]
    dataset.main()


if __name__ == "__main__":
    main()
