"""Frame quality scorers for the aesthetic filter (SPEC 7 step 2), chosen by name.

A frame is usable when ``scorer.usable(scores)``: score >= threshold, or always for
``none``. Each scorer carries its own default threshold:

- ``hpsv3``: the paper's HPSv3 reward model (Qwen2-VL-7B, ~17 GB of GPU memory), run on
  storymem's own transformers 5 (no extra package): its checkpoint ``HPSv3.safetensors``
  from MizzenAI/HPSv3 plus the small config/tokenizer/processor files of
  Qwen/Qwen2-VL-7B-Instruct, read from the Hugging Face cache or a folder
  (scoring/hpsv3_files.py), never downloaded here; threshold 3.0 (paper). Scored as the
  release scores it: empty prompt, frames shrunk to ~200k pixels, and parked on the CPU
  between shots (scoring/hpsv3.py).
- ``laion``: CLIP ViT-L/14 + LAION aesthetic v1 linear head (scoring/laion.py), raw
  0-10 scale; threshold 4.5, see LAION_THRESHOLD.
- ``none``: no filter; scores are 0 and every frame is usable (threshold None).
- ``tiny``: the tiny random LAION model, for tests; threshold 0.0.

Models are cached per process (name, device, weights): a render loads a scorer once,
never once per shot (the release reloaded HPSv3 for every shot). No scorer sees the shot
prompt: the filter judges frames, not prompt following.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

import numpy as np

from storymem_cli.errors import InvalidInputError, MissingWeightsError, StorymemError
from storymem_cli.scoring.clip import check_frames

HPSV3_THRESHOLD = 3.0  # paper: keep frames with HPSv3 >= 3.0
# LAION v1 scores of Wan2.2 frames sit near 6 (ST-Bench aesthetic 0.61-0.65 x 10, SPEC 9);
# LAION's own "aesthetic" subsets start at 4.5, so 4.5 drops only clearly broken frames
# (blur, black, artefacts) and keeps the filter's role as in the paper: reliability, not taste.
LAION_THRESHOLD = 4.5
TINY_THRESHOLD = 0.0  # the tiny head's outputs straddle 0 for random frames
SCORERS = ("hpsv3", "laion", "none", "tiny")

_CACHE: dict[tuple[str, str, str], Any] = {}


class ModelScorer(Protocol):
    def __call__(self, frames: np.ndarray) -> np.ndarray: ...


class QualityScorer:
    """A named scoring function with a threshold. ``score`` -> float32 (N,)."""

    def __init__(self, name: str, threshold: float | None, fn: ModelScorer):
        self.name = name
        self.threshold = threshold
        self._fn = fn

    def score(self, frames: np.ndarray) -> np.ndarray:
        check_frames(frames)
        return np.asarray(self._fn(frames), dtype=np.float32).reshape(len(frames))

    def usable(self, scores: np.ndarray) -> np.ndarray:
        """Boolean mask of frames that pass the filter."""
        scores = np.asarray(scores, dtype=np.float32)
        if self.threshold is None:
            return np.ones(scores.shape, dtype=bool)
        return scores >= self.threshold


def load_scorer(
    name: str,
    threshold: float | None = None,
    device: str = "cpu",
    *,
    weights: str | os.PathLike[str] | None = None,
    clip_weights: str | os.PathLike[str] = "openai",
) -> QualityScorer:
    """The quality scorer ``name`` with ``threshold`` (None: the scorer's default).

    ``weights``: hpsv3 checkpoint file or folder (scoring/hpsv3_files.py), or the LAION head file
    (None: default places);
    ``clip_weights``: the CLIP ViT-L/14 weights of ``laion`` (tag, file or folder).
    """
    if name not in SCORERS:
        raise InvalidInputError(f"unknown aesthetic scorer {name!r}", hint=f"choose one of {', '.join(SCORERS)}")
    if name == "none":
        return QualityScorer("none", None, lambda frames: np.zeros(len(frames), dtype=np.float32))
    key = (name, device, f"{weights}|{clip_weights}")
    if key not in _CACHE:
        _CACHE[key] = _LOADERS[name](device, weights, clip_weights)
    fn, default = _CACHE[key]
    return QualityScorer(name, default if threshold is None else float(threshold), fn)


def _load_laion(device: str, weights: Any, clip_weights: Any) -> tuple[ModelScorer, float]:
    from storymem_cli.scoring.laion import LaionAesthetic

    model = LaionAesthetic.load(clip_pretrained=clip_weights, head=weights, device=device)
    return model.score, LAION_THRESHOLD


def _load_tiny(device: str, weights: Any, clip_weights: Any) -> tuple[ModelScorer, float]:
    from storymem_cli.scoring.laion import LaionAesthetic

    model = LaionAesthetic.tiny(seed=0, device=device)
    return model.score, TINY_THRESHOLD


def _load_hpsv3(device: str, weights: Any, clip_weights: Any) -> tuple[ModelScorer, float]:
    from storymem_cli.scoring.hpsv3_files import download_commands, locate_hpsv3

    files = locate_hpsv3(weights)  # MissingWeightsError naming the missing file and its download
    try:
        from storymem_cli.scoring.hpsv3 import HPSv3Reward

        reward = HPSv3Reward.load(files)
    except StorymemError:
        raise
    except Exception as err:  # transformers/safetensors/OS errors: show the real one, do not trace back
        raise MissingWeightsError(
            f"could not load HPSv3 from {files.checkpoint} with the base model files in {files.base} "
            f"({type(err).__name__}: {err})",
            hint="re-download what is damaged with: " + "; ".join(download_commands())
            + " (or choose the aesthetic scorer laion or none)",
        ) from err
    from storymem_cli.scoring.hpsv3 import HPSv3Scorer

    return HPSv3Scorer(reward, device), HPSV3_THRESHOLD


_LOADERS = {"laion": _load_laion, "tiny": _load_tiny, "hpsv3": _load_hpsv3}
