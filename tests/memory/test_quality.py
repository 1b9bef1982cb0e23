"""Quality scorers: registry, thresholds, usable mask, load-once cache, helpful errors."""

from __future__ import annotations

import sys
import types

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
        return (lambda f, p: np.ones(len(f))), 1.0

    monkeypatch.setitem(quality._LOADERS, "laion", fake_loader)
    monkeypatch.setattr(quality, "_CACHE", {})
    for shot in range(4):
        load_scorer("laion", device="cpu").score(frames)
    assert calls == ["cpu"]


def test_hpsv3_without_the_package_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "hpsv3", None)  # import hpsv3 -> ImportError
    monkeypatch.setattr(quality, "_CACHE", {})
    with pytest.raises(MissingWeightsError) as info:
        load_scorer("hpsv3")
    assert "pip install 'storymem-cli[hpsv3]'" in str(info.value)


def test_hpsv3_adapter_uses_mu_and_the_prompt(monkeypatch, frames):
    seen = {}

    class FakeInferencer:
        def __init__(self, checkpoint_path=None, device="cuda"):
            seen["device"] = device

        def reward(self, prompts, image_paths):
            seen.setdefault("prompts", []).extend(prompts)
            n = len(image_paths)
            return torch.stack([torch.arange(n, dtype=torch.float32) + 2.5, torch.full((n,), 9.0)], dim=1)

    monkeypatch.setitem(sys.modules, "hpsv3", types.SimpleNamespace(HPSv3RewardInferencer=FakeInferencer))
    monkeypatch.setattr(quality, "_CACHE", {})
    scorer = load_scorer("hpsv3", device="cuda:1")
    scores = scorer.score(frames, prompt="a fox")
    assert scorer.threshold == HPSV3_THRESHOLD == 3.0 and seen["device"] == "cuda:1"
    np.testing.assert_allclose(scores, np.arange(len(frames)) + 2.5)
    assert seen["prompts"] == ["a fox"] * len(frames)
    np.testing.assert_array_equal(scorer.usable(scores), scores >= 3.0)


def test_laion_without_head_is_missing_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(quality, "_CACHE", {})
    with pytest.raises(MissingWeightsError, match="LAION aesthetic head"):
        load_scorer("laion", weights=tmp_path / "missing.pth")


def test_unknown_scorer_is_invalid_input():
    with pytest.raises(InvalidInputError, match="unknown aesthetic scorer"):
        load_scorer("hpsv4")
