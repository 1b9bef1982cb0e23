"""MagCache (issue 31): the published Wan2.2 curves, the skip schedule computed from a curve alone,
diffusers' hooks doing exactly that schedule on the tiny model, and calibration into a curve file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from storymem_cli.config import M2V_SAMPLING, T2V_SAMPLING
from storymem_cli.errors import InvalidInputError
from storymem_cli.models import magcache
from storymem_cli.models.registry import RuntimeOptions, load_story_model, resolve_preset


def test_published_curves_are_the_authors_with_their_settings():
    curves = magcache.published_curves()
    i2v, t2v = curves["m2v"], curves["t2v"]
    assert len(i2v.cond) == len(i2v.uncond) == len(t2v.cond) == 40 and i2v.cond[0] == t2v.cond[0] == 1.0
    # the expert switch is where the residual changes most: the first low-noise step
    for curve, at_switch in ((i2v, 0.91076), (t2v, 0.65523)):
        switch = curve.high_steps
        assert curve.cond[switch] == at_switch < min(curve.cond[switch - 5 : switch] + curve.cond[switch + 1 : switch + 6])
    assert (i2v.retention, i2v.experts, t2v.retention, t2v.experts) == (0.1, ("low",), 0.4, ("high", "low"))
    assert "df81cb181776c2c61477c08e1d21f87fda1cd938" in i2v.source
    data = json.loads((magcache.resources.files("storymem_cli.data") / magcache.PUBLISHED_FILE).read_text())
    assert data["licence"].startswith("Apache-2.0")


def test_split_steps_follows_the_boundary_and_shift():
    assert magcache.split_steps(M2V_SAMPLING) == (13, 27)  # shift 4 (StoryMem); the authors' shift 5 gave 15
    assert magcache.split_steps(T2V_SAMPLING) == (26, 14)  # shift 12: as the authors' T2V curve
    assert sum(magcache.split_steps(M2V_SAMPLING.model_copy(update={"steps": 7}))) == 7


def test_skip_schedule_retention_threshold_and_k():
    flat = [1.0] + [0.99] * 9
    assert magcache.skip_schedule(flat, threshold=0.5, k=2, retention=0.0) == [False, True, True] + [False, True, True] * 2 + [False]
    assert magcache.skip_schedule(flat, threshold=0.5, k=2, retention=0.5)[:5] == [False] * 5  # int(0.5 * 10 + 0.5)
    assert not any(magcache.skip_schedule(flat, threshold=0.005, k=3, retention=0.0))  # one step's error is 0.01
    # errors accumulate: 0.01, then 0.01 + 0.0199 > 0.025
    assert magcache.skip_schedule(flat[:4], threshold=0.025, k=3, retention=0.0) == [False, True, False, True]


def test_curve_is_stretched_to_the_expert_steps():
    curve = magcache.published_curves()["m2v"]
    low = curve.expert_ratios("low", 27)
    assert len(low) == 27 and low[0] == curve.cond[15] and low[-1] == curve.cond[-1]
    assert magcache.nearest_interp([1.0, 2.0, 3.0], 1) == [3.0]


@pytest.fixture(scope="module")
def shot(tiny_request):
    """A memory shot of 6 steps (2 high-noise, 4 low-noise) and its frames without any cache."""
    request = tiny_request(steps=6, memory=[np.full((48, 64, 3), 90, np.uint8)])
    plain = load_story_model(resolve_preset("tiny"), RuntimeOptions(device="cpu"))
    frames = plain.generate(request)
    assert plain.shot_stats()["forwards_skipped"] == 0 and plain.shot_stats()["forwards"] == 12
    return request, frames


def test_hooks_skip_exactly_the_computed_schedule(shot):
    """diffusers' MagCacheConfig per expert, set per shot: the forwards that skipped their blocks are
    the pure schedule's steps, once for the conditional and once for the unconditional call."""
    request, plain_frames = shot
    model = load_story_model(resolve_preset("tiny"), RuntimeOptions(device="cpu", cache="magcache", magcache_threshold=0.2))
    frames = model.generate(request)
    plan = magcache.shot_plan(magcache.published_curves()["m2v"], model.sampling_for(request), threshold=0.2, k=2)
    planned = magcache.skipped_steps(plan)
    assert planned["high"] == 0 and planned["low"] > 0  # the authors cache the I2V low-noise expert only
    assert model.shot_stats()["forwards_skipped"] == 2 * planned["low"]
    assert model.describe()["cache"]["last_shot"]["steps"] == {"high": 2, "low": 4}
    assert frames.shape == plain_frames.shape and not np.array_equal(frames, plain_frames)


def test_calibration_records_a_curve_that_magcache_then_uses(tmp_path, shot):
    request, plain_frames = shot
    curve_file = tmp_path / "curves.json"
    calibrating = load_story_model(resolve_preset("tiny"), RuntimeOptions(device="cpu", magcache_calibrate=curve_file))
    assert np.array_equal(calibrating.generate(request), plain_frames)  # it measures, it skips nothing
    assert calibrating.shot_stats()["forwards_skipped"] == 0
    written = json.loads(curve_file.read_text())["curves"]
    assert set(written) == {"m2v"} and written["m2v"]["shots"] == 1
    assert written["m2v"]["high_steps"] == 2 and len(written["m2v"]["cond"]) == 6
    assert written["m2v"]["cond"][0] == written["m2v"]["cond"][2] == 1.0  # each expert's first step

    run = magcache.MagCacheRun(RuntimeOptions(cache="magcache", magcache_curve=curve_file))
    assert run.curves["m2v"].shots == 1 and run.curves["t2v"].shots == 0  # not calibrated: the published curve
    assert run.describe()["curves"]["m2v"]["source"].startswith("calibrated: 1 shot(s)")


def test_a_bad_curve_file_is_refused_naming_it(tmp_path):
    bad = tmp_path / "curve.json"
    bad.write_text('{"format": "something else"}')
    with pytest.raises(InvalidInputError, match="curve.json"):
        magcache.load_curves(bad)


def test_with_compile_the_blocks_are_compiled_beneath_the_hooks(shot, monkeypatch):
    """diffusers' MagCache hooks are torch.compiler.disable'd around every block: compiling the hooked
    blocks compiled nothing. The blocks' own forward is compiled instead, and the skips still counted.
    What is at stake is whether dynamo captures the blocks, so its graphs run eagerly rather than
    through inductor's C++ build (~15 s cold on 2 cores); tests/render/test_fast_modes.py renders
    through inductor."""
    import functools

    import torch
    from torch._dynamo.utils import counters

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    request, plain_frames = shot
    graphs = counters["stats"]["unique_graphs"]
    runtime = RuntimeOptions(device="cpu", cache="magcache", magcache_threshold=0.2, compile=True)
    model = load_story_model(resolve_preset("tiny"), runtime)
    frames = model.generate(request)
    assert counters["stats"]["unique_graphs"] > graphs
    planned = magcache.skipped_steps(magcache.shot_plan(magcache.published_curves()["m2v"], model.sampling_for(request), 0.2, 2))
    assert model.shot_stats()["forwards_skipped"] == 2 * planned["low"] > 0
    assert frames.shape == plain_frames.shape
