"""evaluate_story's wiring, with fake clips and a recording stand-in for the models."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from storymem_cli.errors import InvalidInputError
from storymem_cli.eval import evaluate as E
from storymem_cli.eval.sampling import viclip_input

LENGTHS = [10, 5, 20]  # a 35-frame story


def frame(g: int) -> np.ndarray:
    """Story frame g, recognisable by its grey level."""
    return np.full((16, 16, 3), 7 * g, dtype=np.uint8)


class RecordingModels:
    image_size = 16
    context_length = 32
    num_frames = 8
    aesthetic = None

    def __init__(self):
        self.videos: list[torch.Tensor] = []

    def embed_videos(self, clips):
        self.videos += clips
        return np.eye(len(clips), 4, dtype=np.float32) + 0.1

    def embed_texts(self, texts):
        return np.ones((len(texts), 4), dtype=np.float32)


@pytest.fixture
def story(monkeypatch):
    starts = np.cumsum([0] + LENGTHS)
    clips = {f"shot{i}.mp4": np.stack([frame(g) for g in range(starts[i], starts[i + 1])]) for i in range(3)}
    monkeypatch.setattr(E, "read_clip", lambda p: clips[Path(p).name])
    monkeypatch.setattr(E, "count_frames", lambda p: len(clips[Path(p).name]))
    shots = [SimpleNamespace(prompt=f"shot {i}") for i in range(3)]
    script = SimpleNamespace(story_name="S", story_overview="overview", shots=shots)
    return script, [Path(name) for name in clips]


def test_story_video_takes_vbench_frames_of_the_joined_shots(story):
    script, paths = story
    models = RecordingModels()
    result = E.evaluate_story(script, paths, models, {"prompt_global", "prompt_single"}, system="x", source="t")
    # 3 shot videos, then the story video
    assert len(models.videos) == 4
    # linspace(0, 35, 9) -> 0,4,8,13,17,21,26,30,35; middles by hand:
    expected = [1, 5, 10, 14, 18, 23, 27, 32]
    assert torch.equal(models.videos[3], viclip_input(np.stack([frame(g) for g in expected]), 16))
    # shot 1 (frames 10..14, 5 long) is sampled 0,1,2,3,4,4,4,4 within the shot
    assert torch.equal(models.videos[1], viclip_input(np.stack([frame(10 + k) for k in [0, 1, 2, 3, 4, 4, 4, 4]]), 16))
    assert result.frames_per_shot == LENGTHS and result.scores["prompt_global"] is not None


def test_unselected_metrics_stay_none_and_skip_models(story):
    script, paths = story
    models = RecordingModels()
    result = E.evaluate_story(script, paths, models, {"consistency_all"}, system="x", source="t")
    assert set(result.scores) == {"consistency_all"} and len(models.videos) == 3
    assert result.to_json()["aesthetic"] is None


def test_count_mismatch_is_invalid_input(story):
    script, paths = story
    with pytest.raises(InvalidInputError, match=r"2 clip\(s\) but the script 'S' has 3 shot\(s\)"):
        E.evaluate_story(script, paths[:2], RecordingModels(), {"prompt_single"}, system="x", source="t")
