"""Switching between the T2V and M2V expert pairs (issue 24): both stay loaded when the second fits,
so a --no-memory story alternating cuts (T2V) and continuations (M2V) loads two pairs, not one per
shot; when it does not fit, each switch releases and reloads as before. The frames are the same
either way, with and without memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.models import residency
from storymem_cli.models.story_model import StoryModel

from .conftest import small_story, write_script

ROOM = {"plenty": residency.PoolMemory(free=1 << 50, total=1 << 50), "none": residency.PoolMemory(free=0, total=1 << 40)}


def alternating_story(name: str, shots: int) -> dict:
    story = small_story(name, shots=shots)
    story["scenes"][0]["cut"] = [i % 2 == 0 for i in range(shots)]  # cut, continuation, cut, ...
    return story


def render(monkeypatch, tmp_path: Path, room: str, scripts: list[Path], *options: str) -> dict:
    """Render ``scripts`` in one process with the host memory the keep-both rule sees (the pool of
    --device cpu); returns the pair loads, every shot's frames in order, and each run.json."""
    loads: list[str] = []
    frames: list[np.ndarray] = []
    load_pair, generate = StoryModel._load_pair, StoryModel.generate

    def spy_load(self, kind):
        loads.append(kind)
        return load_pair(self, kind)

    def spy_generate(self, request, *args, **kwargs):
        video = generate(self, request, *args, **kwargs)
        frames.append(video.copy())
        return video

    with monkeypatch.context() as patch:
        patch.setattr(residency, "host_memory", lambda: ROOM[room])
        patch.setattr(StoryModel, "_load_pair", spy_load)
        patch.setattr(StoryModel, "generate", spy_generate)
        out = tmp_path / room
        result = CliRunner().invoke(app, ["render", *map(str, scripts), "-o", str(out / "run" if len(scripts) == 1 else out),
                                          "--model", "tiny", "--device", "cpu", "--frames", "5", "--steps", "2",
                                          *options])  # fmt: skip
    assert result.exit_code == 0, result.output
    folders = [out / "run"] if len(scripts) == 1 else [out / s.stem for s in scripts]
    return {"loads": loads, "frames": frames, "records": [json.loads((f / "run.json").read_text()) for f in folders]}


def assert_same_pixels(kept: dict, reloaded: dict) -> None:
    assert len(kept["frames"]) == len(reloaded["frames"])
    for a, b in zip(kept["frames"], reloaded["frames"]):
        assert np.array_equal(a, b)
    for a, b in zip(kept["records"], reloaded["records"]):
        assert [s["clip_sha256"] for s in a["shots"]] == [s["clip_sha256"] for s in b["shots"]]
        assert a["video_sha256"] == b["video_sha256"]


def test_no_memory_story_keeps_both_pairs_when_they_fit(monkeypatch, tmp_path):
    script = write_script(tmp_path, "alternate.json", alternating_story("Alternate", shots=4))
    kept = render(monkeypatch, tmp_path, "plenty", [script], "--no-memory")
    reloaded = render(monkeypatch, tmp_path, "none", [script], "--no-memory")

    assert [s["mode"] for s in kept["records"][0]["shots"]] == ["t2v", "mi2v"] * 2
    assert kept["loads"] == ["t2v", "m2v"]
    assert reloaded["loads"] == ["t2v", "m2v"] * 2  # one pair per shot, as before both could stay
    assert kept["records"][0]["model"]["expert_pairs"] == {"held": ["m2v", "t2v"], "loads": 2}
    assert reloaded["records"][0]["model"]["expert_pairs"] == {"held": ["m2v"], "loads": 4}
    assert_same_pixels(kept, reloaded)


def test_memory_renders_in_a_batch_load_each_pair_once_with_the_same_frames(monkeypatch, tmp_path):
    """With memory a story switches once (T2V first shot, then M2V); the next story of a batch starts
    with T2V again, which the kept pair serves."""
    scripts = [write_script(tmp_path, f"{name}.json", small_story(name.title(), shots=2)) for name in ("lake", "pond")]
    kept = render(monkeypatch, tmp_path, "plenty", scripts)
    reloaded = render(monkeypatch, tmp_path, "none", scripts)

    assert kept["loads"] == ["t2v", "m2v"]
    assert reloaded["loads"] == ["t2v", "m2v"] * 2
    assert_same_pixels(kept, reloaded)


@pytest.mark.parametrize("offload", ["model", "group"])
def test_offloaded_pairs_switch_back_and_forth_with_the_same_frames(monkeypatch, tmp_path, offload):
    """With offloading the pairs wait in RAM; model offload hooks the shared text encoder and VAE to
    whichever pipeline runs next."""
    script = write_script(tmp_path, "alternate.json", alternating_story("Offloaded", shots=3))
    kept = render(monkeypatch, tmp_path, "plenty", [script], "--no-memory", "--offload", offload)
    reloaded = render(monkeypatch, tmp_path, "none", [script], "--no-memory", "--offload", offload)

    assert kept["loads"] == ["t2v", "m2v"] and reloaded["loads"] == ["t2v", "m2v", "t2v"]
    assert_same_pixels(kept, reloaded)
