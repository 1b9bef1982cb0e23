"""Quality scorers: registry, thresholds, usable mask, load-once cache, helpful errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from storymem_cli.errors import InvalidInputError, MissingWeightsError
from storymem_cli.memory import quality
from storymem_cli.memory.quality import HPSV3_THRESHOLD, load_scorer


def test_none_scores_everything_usable(frames):
    scorer = load_scorer("none")
    scores = scorer.score(frames)
    assert scorer.name == "none" and scorer.threshold is None
    assert scores.shape == (len(frames),) and scorer.usable(scores).all()


def test_tiny_threshold_default_and_override(frames):
    scorer = load_scorer("tiny")
    scores = scorer.score(frames)
    assert scorer.threshold == quality.TINY_THRESHOLD and scores.dtype == np.float32
    cut = float(np.median(scores))
    strict = load_scorer("tiny", threshold=cut)
    assert strict.threshold == cut
    np.testing.assert_array_equal(strict.usable(scores), scores >= cut)
    assert 0 < strict.usable(scores).sum() < len(frames)


def test_models_load_once_per_process(monkeypatch, frames):
    calls = []

    def fake_loader(device, weights, clip_weights):
        calls.append(device)
        return (lambda f: np.ones(len(f))), 1.0

    monkeypatch.setitem(quality._LOADERS, "laion", fake_loader)
    monkeypatch.setattr(quality, "_CACHE", {})
    for shot in range(4):
        load_scorer("laion", device="cpu").score(frames)
    assert calls == ["cpu"]


def test_hpsv3_adapter_scores_small_copies_with_an_empty_prompt_and_parks_the_model(fake_hpsv3):
    # As the release: prompt "" for every frame, frames shrunk to ~200k pixels first (832x480 -> 588x336),
    # the reward's mu as the score. Between shots the model waits on the CPU.
    fake = fake_hpsv3(mu=lambda n: torch.arange(n, dtype=torch.float32) + 2.5)
    frames = np.random.default_rng(0).integers(0, 256, size=(10, 480, 832, 3), dtype=np.uint8)
    scorer = load_scorer("hpsv3", device="cuda:1")
    model = fake.reward.model
    assert fake.loads == 1 and model.device == "cpu"  # loaded onto the CPU, parked there
    scores = scorer.score(frames)
    assert scorer.threshold == HPSV3_THRESHOLD == 3.0
    np.testing.assert_allclose(scores, [2.5 + i % 8 for i in range(10)])  # batches of 8
    assert fake.prompts == [""] * 10
    assert fake.sizes == [(588, 336)] * 10  # PIL sizes are (width, height)
    assert fake.scored_on == ["cuda:1", "cuda:1"] and model.device == "cpu"
    np.testing.assert_array_equal(scorer.usable(scores), scores >= 3.0)
    load_scorer("hpsv3", device="cuda:1")
    assert fake.loads == 1  # once per process


def test_hpsv3_is_parked_again_when_scoring_fails(fake_hpsv3, frames):
    fake = fake_hpsv3(mu=lambda n: torch.full((n,), 1.0))
    scorer = load_scorer("hpsv3", device="cuda:0")
    fake.fail = True
    with pytest.raises(RuntimeError, match="out of memory"):
        scorer.score(frames)
    assert fake.reward.model.device == "cpu"


def test_laion_without_head_is_missing_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(quality, "_CACHE", {})
    with pytest.raises(MissingWeightsError, match="LAION aesthetic head"):
        load_scorer("laion", weights=tmp_path / "missing.pth")


def test_unknown_scorer_is_invalid_input():
    with pytest.raises(InvalidInputError, match="unknown aesthetic scorer"):
        load_scorer("hpsv4")

