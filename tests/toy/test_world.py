"""The world's tables and the renderer: colour rules, determinism, geometry, motion."""

from __future__ import annotations

import numpy as np
import pytest

from storymem_cli.toy.render import render_background, render_clip, shape_mask
from storymem_cli.toy.world import (
    ACCESSORIES,
    ACTIONS,
    CHARACTER_CHROMA_MIN,
    COLOURS,
    SETTING_CHROMA_MAX,
    SETTINGS,
    SHAPES,
    Character,
    Shot,
    all_characters,
    chroma,
)

HERO = Character("square", "red", "hat")


def _body(clip: np.ndarray, colour: str) -> np.ndarray:
    return (clip == np.asarray(COLOURS[colour], dtype=np.uint8)).all(axis=-1)


def test_sizes_of_the_world():
    assert (len(SHAPES), len(COLOURS), len(ACCESSORIES), len(ACTIONS), len(SETTINGS)) == (5, 8, 4, 8, 7)
    assert len(all_characters()) == 160


def test_character_colours_are_saturated_and_setting_colours_are_not():
    assert all(chroma(rgb) >= CHARACTER_CHROMA_MIN for rgb in COLOURS.values())
    for s in SETTINGS.values():
        for rgb in (s.sky_top, s.sky_bottom, s.ground, s.prop_rgb, s.accent_rgb):
            assert chroma(rgb) <= SETTING_CHROMA_MAX, (s.name, rgb)


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_rendered_settings_stay_below_the_character_chroma(setting):
    for seed in range(5):
        bg = render_background(setting, seed).astype(int)
        assert (bg.max(axis=-1) - bg.min(axis=-1)).max() <= SETTING_CHROMA_MAX


def test_same_seed_same_clip_and_different_seeds_differ():
    shot = Shot(HERO, "hop_left", "beach")
    a, b = render_clip(shot, 5), render_clip(shot, 5)
    assert np.array_equal(a, b)
    assert np.array_equal(a, render_clip(shot, np.random.default_rng(5)))
    assert not np.array_equal(a, render_clip(shot, 6))


def test_clip_shape_and_dtype():
    clip = render_clip(Shot(HERO, "walk_right", "forest"), 0)
    assert clip.shape == (17, 64, 64, 3) and clip.dtype == np.uint8
    small = render_clip(Shot(HERO, "walk_right", "forest"), 0, frames=5, size=32)
    assert small.shape == (5, 32, 32, 3) and small.dtype == np.uint8


def test_every_shape_fills_its_unit_box_differently():
    c = (np.arange(64) + 0.5) / 32 - 1
    masks = {s: shape_mask(s, c[None, :], c[:, None]) for s in SHAPES}
    for s, m in masks.items():
        assert m[:, 0].any() or m[0, :].any(), s  # touches the box
    for i, a in enumerate(SHAPES):
        for b in SHAPES[i + 1 :]:
            iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
            assert iou < 0.85, (a, b, iou)


@pytest.mark.parametrize("action", list(ACTIONS))
def test_character_is_whole_and_inside_every_frame(action):
    for seed in range(20):
        ch = all_characters()[seed * 7 % 160]
        body = _body(render_clip(Shot(ch, action, "snow"), seed), ch.colour)
        per_frame = body.sum(axis=(1, 2))
        assert (per_frame >= 12).all(), (action, seed, per_frame)
        assert not body[:, :, 0].any() and not body[:, :, -1].any()
        assert not body[:, 0, :].any() and not body[:, -1, :].any()


def _track(action: str, seed: int = 3):
    body = _body(render_clip(Shot(HERO, action, "desert"), seed), HERO.colour)
    xs = np.indices(body.shape[1:])[1]
    area = body.sum(axis=(1, 2))
    cx = (body * xs).sum(axis=(1, 2)) / area
    top = np.array([np.nonzero(f.any(axis=1))[0].min() for f in body])
    width = np.array([np.ptp(np.nonzero(f.any(axis=0))[0]) + 1 for f in body])
    return cx, top, area, width


def test_actions_move_as_their_names_say():
    cx, *_ = _track("walk_left")
    assert cx[-1] < cx[0] - 15
    cx, *_ = _track("walk_right")
    assert cx[-1] > cx[0] + 15
    cx, top, *_ = _track("hop_left")
    assert cx[-1] < cx[0] - 15 and top.min() < top[0] - 5
    cx, top, *_ = _track("hop_right")
    assert cx[-1] > cx[0] + 15 and top.min() < top[0] - 5
    cx, top, *_ = _track("jump")
    assert abs(cx[-1] - cx[0]) < 1 and top[8] < top[0] - 10
    _, _, area, _ = _track("grow")
    assert area[-1] > 1.8 * area[0]
    _, _, area, _ = _track("shrink")
    assert area[-1] < 0.5 * area[0]
    _, _, _, width = _track("turn")
    assert width[8] < 0.3 * width[0] and width[-1] == pytest.approx(width[0], abs=1)


def test_invalid_names_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        Character("hexagon", "red", "hat")
    with pytest.raises(ValueError, match="action"):
        Shot(HERO, "dance", "beach")
    with pytest.raises(ValueError, match="setting"):
        Shot(HERO, "jump", "moon")
