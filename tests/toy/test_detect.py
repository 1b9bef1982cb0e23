"""The rule-based detector: exact on clean clips, tolerant of what an imperfect model produces."""

from __future__ import annotations

import numpy as np
import pytest

from storymem_cli.toy.corrupt import CORRUPTIONS
from storymem_cli.toy.detect import detect_clip, setting_references
from storymem_cli.toy.render import render_background, render_clip
from storymem_cli.toy.world import (
    ACTIONS,
    SETTINGS,
    SHAPES,
    Character,
    Shot,
    all_characters,
)

CORRUPTED_CLIPS = 40  # per corruption: a spread of characters, actions and settings
CORRUPTED_FLOOR = 0.95  # measured 0.985-1.0 on 200 clips per corruption (benchmarks/toy_world.py)


def _balanced_shots() -> list[Shot]:
    """Every character once; actions and settings cycle so every action and setting appears
    with every shape."""
    actions, settings = list(ACTIONS), list(SETTINGS)
    return [Shot(ch, actions[i % len(actions)], settings[(i // 3) % len(settings)])
            for i, ch in enumerate(all_characters())]


def _accuracy(pairs) -> dict[str, float]:
    hits = np.array([(d.colour == s.character.colour, d.shape == s.character.shape, d.setting == s.setting)
                     for s, d in pairs], dtype=float)
    return dict(zip(("colour", "shape", "setting"), hits.mean(axis=0)))


@pytest.fixture(scope="module")
def clean_clips():
    shots = _balanced_shots()
    return [(s, render_clip(s, 1000 + i)) for i, s in enumerate(shots)]


def test_every_character_is_read_exactly_from_clean_clips(clean_clips, report_measurement):
    pairs = [(s, detect_clip(c)) for s, c in clean_clips]
    acc = _accuracy(pairs)
    report_measurement("clean, all 160 characters", ", ".join(f"{k} {v:.3f}" for k, v in acc.items()))
    wrong = [(s, d.colour, d.shape, d.setting) for s, d in pairs
             if (d.colour, d.shape, d.setting) != (s.character.colour, s.character.shape, s.setting)]
    assert not wrong


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_detector_tolerates_corrupted_clips(kind, clean_clips, report_measurement):
    rng = np.random.default_rng(7)
    chosen = rng.choice(len(clean_clips), CORRUPTED_CLIPS, replace=False)
    pairs = []
    for i in chosen:
        shot, clip = clean_clips[i]
        pairs.append((shot, detect_clip(CORRUPTIONS[kind](clip, rng))))
    acc = _accuracy(pairs)
    report_measurement(f"{kind}, {CORRUPTED_CLIPS} clips", ", ".join(f"{k} {v:.3f}" for k, v in acc.items()))
    assert min(acc.values()) >= CORRUPTED_FLOOR, acc


def test_corruptions_really_change_the_clip(clean_clips):
    _, clip = clean_clips[0]
    for kind, fn in CORRUPTIONS.items():
        out = fn(clip, np.random.default_rng(0))
        assert out.shape == clip.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - clip).mean() > 0.5, kind


def test_a_single_frame_is_read_too():
    shot = Shot(Character("triangle", "purple", "glasses"), "walk_left", "forest")
    d = detect_clip(render_clip(shot, 3)[0])
    assert (d.colour, d.shape, d.setting) == ("purple", "triangle", "forest")


def test_an_empty_setting_has_no_character():
    for name in SETTINGS:
        d = detect_clip(np.stack([render_background(name, 99)] * 5))
        assert (d.colour, d.shape, d.setting, d.body_fraction) == (None, None, name, 0.0)


def test_shapes_are_told_apart_by_a_margin():
    """On clean clips the right shape's IoU beats the runner-up clearly, not by luck."""
    for i, shape in enumerate(SHAPES):
        d = detect_clip(render_clip(Shot(Character(shape, "green", "none"), "walk_right", "meadow"), i))
        ranked = sorted(d.shape_scores.values(), reverse=True)
        assert d.shape == shape and ranked[0] > 0.9 and ranked[0] - ranked[1] > 0.05, d.shape_scores


def test_setting_references_are_far_apart():
    refs = setting_references()
    d = np.sqrt(((refs[:, None] - refs[None]) ** 2).sum(-1))
    assert d[~np.eye(len(refs), dtype=bool)].min() > 40  # RGB units over six channels


def test_other_resolutions():
    shot = Shot(Character("cross", "cyan", "bow"), "hop_right", "night_city")
    d = detect_clip(render_clip(shot, 0, size=128))
    assert (d.colour, d.shape, d.setting) == ("cyan", "cross", "night_city")


def test_rejects_non_rgb_input():
    with pytest.raises(ValueError, match="RGB"):
        detect_clip(np.zeros((5, 64, 64), dtype=np.uint8))
