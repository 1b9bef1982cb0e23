"""The ``pixels`` frame embedder: area-averaged 16x16 frames, for the toy world."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from storymem_cli.errors import InvalidInputError
from storymem_cli.memory.embed import EMBEDDERS, PIXEL_GRID, load_embedder
from storymem_cli.toy.render import render_background, render_clip
from storymem_cli.toy.world import SETTINGS, Character, Shot


def test_pixels_is_a_known_embedder_with_normalised_float32_rows(frames):
    assert "pixels" in EMBEDDERS
    emb = load_embedder("pixels")
    out = emb.embed(frames)
    assert emb.name == "pixels" and emb.dim == PIXEL_GRID * PIXEL_GRID * 3 == 768
    assert out.shape == (len(frames), emb.dim) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(emb.embed(frames[2:3]), out[2:3])  # rows do not depend on the batch


def test_divisible_frames_are_block_means_scaled_to_plus_minus_one(rng):
    frame = rng.integers(0, 256, size=(64, 48, 3), dtype=np.uint8)
    blocks = frame.reshape(PIXEL_GRID, 4, PIXEL_GRID, 3, 3).astype(np.float64).mean(axis=(1, 3))
    expected = (blocks / 127.5 - 1.0).ravel()
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(load_embedder("pixels").embed(frame[None])[0], expected, atol=1e-6)


def test_any_size_is_area_averaged_exactly(frames):
    # A frame blown up 16x by nearest neighbour has whole-pixel cells of the original's area
    # average: both must embed the same, whatever the original's size (40x72 here).
    emb = load_embedder("pixels")
    big = np.repeat(np.repeat(frames, PIXEL_GRID, axis=1), PIXEL_GRID, axis=2)
    np.testing.assert_allclose(emb.embed(frames), emb.embed(big), atol=1e-6)


def test_frames_of_one_clip_are_closer_than_two_settings():
    emb = load_embedder("pixels")
    backgrounds = {name: emb.embed(render_background(name, seed=0)[None])[0] for name in SETTINGS}
    hero = Character("circle", "red", "none")
    for name in SETTINGS:
        clip = emb.embed(render_clip(Shot(hero, "walk_right", name), seed=0))
        consecutive = float(np.mean(np.sum(clip[:-1] * clip[1:], axis=1)))
        closest_other = max(float(backgrounds[name] @ backgrounds[o]) for o in SETTINGS if o != name)
        assert consecutive > closest_other, (name, consecutive, closest_other)
    # Two bright, different places are far apart; a random tiny CLIP cannot tell them.
    assert float(backgrounds["beach"] @ backgrounds["forest"]) < 0.5
    clip = emb.embed(render_clip(Shot(hero, "hop_left", "beach"), seed=1))
    assert float(clip[0] @ clip[8]) > float(backgrounds["beach"] @ backgrounds["forest"])
    pairs = [float(backgrounds[a] @ backgrounds[b]) for a, b in itertools.combinations(SETTINGS, 2)]
    assert min(pairs) < 0


def test_pixels_takes_no_weights():
    with pytest.raises(InvalidInputError, match="'pixels' frame embedder has no weights"):
        load_embedder("pixels", weights="openai")


def test_pixels_needs_no_torch(child_env):
    code = (
        "import sys; from storymem_cli.memory.embed import load_embedder; import numpy as np; "
        "load_embedder('pixels').embed(np.zeros((2, 32, 32, 3), np.uint8)); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=child_env()
    )
    assert out.stdout.strip() == "False"
