"""The ST-Bench metrics as pure functions of embeddings and scores (SPEC 9, paper Table 1).

Every function takes numpy arrays and returns plain floats, so the arithmetic is tested
without any model. Embeddings are (N, D) float32 rows; they are re-normalised here so a
caller's rounding cannot bias a cosine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

METRICS = ("aesthetic", "prompt_global", "prompt_single", "consistency_all", "consistency_top10")
TOP_PAIRS = 10  # paper: "the ten most relevant shot pairs"


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def paired_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of row i of `a` with row i of `b`: (N,) float64."""
    a, b = _unit(a), _unit(b)
    if a.shape != b.shape:
        raise ValueError(f"paired rows must match in shape, got {a.shape} and {b.shape}")
    return np.sum(a * b, axis=-1)


def cosine_matrix(x: np.ndarray) -> np.ndarray:
    """All cosines between the rows of `x`: (N, N)."""
    u = _unit(x)
    return u @ u.T


def prompt_following_global(story_video: np.ndarray, overview_text: np.ndarray) -> float:
    """Cosine of the whole story video's embedding with the story overview's."""
    return float(paired_cosine(story_video, overview_text)[0])


def prompt_following_single(shot_videos: np.ndarray, shot_texts: np.ndarray) -> float:
    """Mean over shots of the cosine between each shot's video and its own prompt."""
    return float(np.mean(paired_cosine(shot_videos, shot_texts)))


def all_pairs(n: int) -> list[tuple[int, int]]:
    """Every unordered shot pair (i < j)."""
    return list(combinations(range(n), 2))


def consistency_all(shot_videos: np.ndarray) -> float | None:
    """Mean video-video cosine over all shot pairs; None for a one-shot story (no pairs)."""
    pairs = all_pairs(len(shot_videos))
    if not pairs:
        return None
    sim = cosine_matrix(shot_videos)
    return float(np.mean([sim[i, j] for i, j in pairs]))


def most_similar_prompt_pairs(shot_texts: np.ndarray, k: int = TOP_PAIRS) -> list[tuple[int, int]]:
    """The `k` shot pairs whose prompt embeddings are most alike (all pairs if fewer).

    Ranked by text-text cosine, highest first; equal cosines keep (i, j) order so the
    choice is deterministic.
    """
    pairs = all_pairs(len(shot_texts))
    sim = cosine_matrix(shot_texts)
    order = sorted(range(len(pairs)), key=lambda p: -sim[pairs[p]])  # sorted() is stable
    return [pairs[p] for p in order[:k]]


@dataclass(frozen=True)
class TopPairs:
    """Consistency over the prompt-selected pairs, with what was selected."""

    value: float | None
    pairs: list[tuple[int, int]] = field(default_factory=list)
    available: int = 0  # all pairs the story has; < k means every pair was used

    @property
    def short(self) -> bool:
        return self.available < TOP_PAIRS


def consistency_top_pairs(shot_videos: np.ndarray, shot_texts: np.ndarray, k: int = TOP_PAIRS) -> TopPairs:
    """Mean video-video cosine over the `k` pairs with the most similar prompts."""
    if len(shot_videos) != len(shot_texts):
        raise ValueError(f"{len(shot_videos)} shot videos but {len(shot_texts)} shot prompts")
    pairs = most_similar_prompt_pairs(shot_texts, k)
    available = len(all_pairs(len(shot_videos)))
    if not pairs:
        return TopPairs(None, [], available)
    sim = cosine_matrix(shot_videos)
    return TopPairs(float(np.mean([sim[i, j] for i, j in pairs])), pairs, available)


def aesthetic_quality(per_shot_frame_scores: list[np.ndarray]) -> float:
    """LAION head outputs (0-10) per frame, per shot -> story score in [0, 1]:
    / 10, mean over each shot's frames, then mean over shots."""
    if not per_shot_frame_scores:
        raise ValueError("no shots to score")
    shot_means = [float(np.mean(np.asarray(s, dtype=np.float64))) / 10.0 for s in per_shot_frame_scores]
    return float(np.mean(shot_means))


def mean_over_stories(values: list[float | None]) -> float | None:
    """Mean of the stories that have a value (a one-shot story has no consistency)."""
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None
