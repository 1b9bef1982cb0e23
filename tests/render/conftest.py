"""Fixtures for the render tests: small story scripts and a recorder around the REAL tiny model.

The recorder only observes: it passes every request to the real model and keeps a copy of the
request and the frames the model returned, so tests can check what each shot was conditioned on
and which shots were generated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.render import components

# Scene 1: cut, continuation, cut; scene 2: cut, continuation. 5 shots, 2 MI2V.
STORY = {
    "story_name": "Lantern Walk",
    "story_overview": "A child carries a paper lantern through a night market.",
    "scenes": [
        {
            "scene_num": 1,
            "video_prompts": [
                "A girl in a red coat lights a paper lantern on a doorstep at dusk.",
                "The girl in the red coat lifts the glowing lantern and steps into the street.",
                "A night market full of stalls and strings of lights, wide shot.",
            ],
            "cut": [True, False, True],
        },
        {
            "scene_num": 2,
            "video_prompts": [
                "The girl in the red coat stops at a noodle stall, steam rising around her lantern.",
                "The girl in the red coat walks on past the stall, lantern swinging.",
            ],
            "cut": [True, False],
        },
    ],
}


# The torchrun stories (test_torchrun*.py): T2V, MI2V with memory, M2V with memory.
HERON = {
    "story_name": "Heron Lake",
    "scenes": [
        {
            "scene_num": 1,
            "video_prompts": ["A boat on a calm lake at dawn.", "The boat turns toward the reeds.",
                              "A heron lands on the boat's bow."],
            "cut": [True, False, True],
        }
    ],
}  # fmt: skip


def write_script(folder: Path, name: str, story: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(story, indent=2), encoding="utf-8")
    return path


def small_story(name: str, shots: int = 2) -> dict[str, Any]:
    return {
        "story_name": name,
        "scenes": [
            {
                "scene_num": 1,
                "video_prompts": [f"{name}: shot {i + 1}, a boat on a calm lake." for i in range(shots)],
                "cut": [True] + [False] * (shots - 1),
            }
        ],
    }


class RecordingModel:
    """The real model, with a log of (request, frames) per generate call."""

    def __init__(self, model: Any, log: list):
        self.model = model
        self.log = log

    def generate(self, request: Any, progress: Any = None) -> np.ndarray:
        frames = self.model.generate(request, progress=progress)
        self.log.append((request, frames.copy()))
        return frames

    def describe(self) -> dict[str, Any]:
        return self.model.describe()


_REAL_LOAD = components.load_model
_LOADED: dict[tuple, Any] = {}


def record_generate(monkeypatch: pytest.MonkeyPatch, log: list) -> None:
    """Make renders use the real model (loaded once per test session) through a RecordingModel."""

    def load(preset: Any, settings: Any) -> RecordingModel:
        key = (preset.name, settings.continuation, settings.lora, settings.style_loras)
        if key not in _LOADED:
            _LOADED[key] = _REAL_LOAD(preset, settings)
        return RecordingModel(_LOADED[key], log)

    monkeypatch.setattr(components, "load_model", load)


@pytest.fixture
def generate_log(monkeypatch) -> list:
    """Every generate call of the renders in this test."""
    log: list = []
    record_generate(monkeypatch, log)
    return log


@pytest.fixture
def story_script(tmp_path) -> Path:
    return write_script(tmp_path / "scripts", "lantern.json", STORY)


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """One uninterrupted render of STORY, with the generate log."""
    root = tmp_path_factory.mktemp("finished")
    script = write_script(root / "scripts", "lantern.json", STORY)
    log: list = []
    patch = pytest.MonkeyPatch()
    record_generate(patch, log)
    try:
        result = CliRunner().invoke(
            app, ["render", str(script), "-o", str(root / "run"), "--model", "tiny", "--device", "cpu", "--json"]
        )
    finally:
        patch.undo()
    assert result.exit_code == 0, result.output
    return {"run": root / "run", "script": script, "log": log, "summary": json.loads(result.stdout)}


@pytest.fixture(scope="session")
def heron_one_process(tmp_path_factory) -> Path:
    """HERON rendered by one process with one thread (CPU float sums depend on the thread count), the
    reference the torchrun renders are compared with: ``render SCRIPT -o RUN --model tiny --device cpu``."""
    import torch

    root = tmp_path_factory.mktemp("heron")
    script = write_script(root / "scripts", "heron.json", HERON)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(app, ["render", str(script), "-o", str(root / "run"), "--model", "tiny",
                                          "--device", "cpu", "--json"])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return root / "run"
