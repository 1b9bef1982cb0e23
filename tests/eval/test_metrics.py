"""Metric arithmetic on synthetic embeddings: no model involved."""

from __future__ import annotations

import numpy as np
import pytest

from storymem_cli.eval import metrics as M


def unit(rows) -> np.ndarray:
    a = np.asarray(rows, dtype=np.float64)
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def test_consistency_all_is_the_mean_over_every_pair():
    # Three shots at angles 0, 60 and 90 degrees: cosines 0.5 (0-1), 0 (0-2), cos 30 (1-2).
    v = np.array([[1, 0], [0.5, np.sqrt(3) / 2], [0, 1]])
    expected = (0.5 + 0.0 + np.sqrt(3) / 2) / 3
    assert M.consistency_all(v) == pytest.approx(expected)


def test_consistency_renormalises_rows():
    v = np.array([[2.0, 0], [0, 5.0], [3.0, 3.0]])
    expected = (0 + np.sqrt(0.5) + np.sqrt(0.5)) / 3
    assert M.consistency_all(v) == pytest.approx(expected)


def test_one_shot_has_no_consistency():
    assert M.consistency_all(np.array([[1.0, 0.0]])) is None
    top = M.consistency_top_pairs(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
    assert top.value is None and top.pairs == [] and top.available == 0


def test_top10_picks_the_pairs_with_the_most_similar_prompts():
    # 6 shots -> 15 pairs. Prompts: shots 0-2 share one text direction, 3-5 another;
    # texts within a group are near-identical, across groups orthogonal.
    g = np.random.default_rng(0)
    a, b = np.eye(8)[0], np.eye(8)[1]
    texts = unit([a + 0.01 * g.normal(size=8) for _ in range(3)] + [b + 0.01 * g.normal(size=8) for _ in range(3)])
    within = {(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5)}
    chosen = M.most_similar_prompt_pairs(texts, k=6)
    assert set(chosen) == within
    # Videos: within-group pairs have cosine 1, across-group 0, so the top-6 mean is 1
    # and the all-pairs mean is 6/15.
    videos = unit([a] * 3 + [b] * 3)
    assert M.consistency_top_pairs(videos, texts, k=6).value == pytest.approx(1.0)
    assert M.consistency_all(videos) == pytest.approx(6 / 15)


def test_top10_takes_exactly_ten_of_many_pairs_ranked_by_text_cosine():
    g = np.random.default_rng(1)
    texts = unit(g.normal(size=(7, 16)))  # 21 pairs
    videos = unit(g.normal(size=(7, 16)))
    top = M.consistency_top_pairs(videos, texts)
    assert len(top.pairs) == 10 and top.available == 21 and not top.short
    tsim = texts @ texts.T
    all_sims = sorted((tsim[i, j] for i in range(7) for j in range(i + 1, 7)), reverse=True)
    assert min(tsim[i, j] for i, j in top.pairs) == pytest.approx(all_sims[9])
    vsim = videos @ videos.T
    assert top.value == pytest.approx(np.mean([vsim[i, j] for i, j in top.pairs]))


def test_fewer_than_ten_pairs_uses_all_of_them_and_says_so():
    g = np.random.default_rng(2)
    texts, videos = unit(g.normal(size=(4, 8))), unit(g.normal(size=(4, 8)))  # 6 pairs
    top = M.consistency_top_pairs(videos, texts)
    assert top.short and top.available == 6 and len(top.pairs) == 6
    assert top.value == pytest.approx(M.consistency_all(videos))


def test_global_and_single_shot_prompt_following_differ():
    # Shot videos match their own prompts exactly (single-shot = 1); the story video is
    # orthogonal to the overview (global = 0). The two are separate measurements.
    shots = unit([[1, 0, 0], [0, 1, 0]])
    assert M.prompt_following_single(shots, shots) == pytest.approx(1.0)
    assert M.prompt_following_global(np.array([[0, 0, 1.0]]), np.array([[1.0, 0, 0]])) == pytest.approx(0.0)
    # single-shot is the mean of per-shot cosines: 1 and cos 45 degrees
    texts = unit([[1, 0, 0], [1, 1, 0]])
    assert M.prompt_following_single(shots, texts) == pytest.approx((1 + np.sqrt(0.5)) / 2)


def test_aesthetic_averages_frames_within_a_shot_then_shots():
    # Shot A: 2 frames (6, 8) -> 0.7; shot B: 4 frames all 5 -> 0.5. Mean over shots 0.6,
    # whereas a mean over all 6 frames would give 0.5667.
    assert M.aesthetic_quality([np.array([6.0, 8.0]), np.array([5.0, 5.0, 5.0, 5.0])]) == pytest.approx(0.6)


def test_mean_over_stories_skips_missing_values():
    assert M.mean_over_stories([0.2, None, 0.4]) == pytest.approx(0.3)
    assert M.mean_over_stories([None]) is None
