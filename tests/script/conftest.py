"""Fixtures for the story-script tests: a small valid story and a way to write variants of it."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image


def story() -> dict[str, Any]:
    """A valid two-scene, five-shot story with one continuation (a fresh copy each call)."""
    return copy.deepcopy(
        {
            "story_name": "The Kite",
            "story_overview": "A boy and his grandmother fly a kite on a windy hill.",
            "scenes": [
                {
                    "scene_num": 1,
                    "video_prompts": [
                        "A boy in a green jacket runs up a grassy hill holding a red kite. Wide shot.",
                        "The kite lifts into the wind above the boy. Low-angle shot.",
                        "His grandmother in a blue scarf claps from the foot of the hill. Medium shot.",
                    ],
                    "first_frame_prompt": [
                        "Boy with a red kite on a hill.",
                        "Red kite rising.",
                        "Grandmother clapping.",
                    ],
                    "cut": [True, False, True],
                },
                {
                    "scene_num": 2,
                    "video_prompts": [
                        "At sunset the boy and his grandmother sit on the hill beside the kite. Wide shot.",
                        "Close-up of the boy's smiling face in the orange light.",
                    ],
                    "first_frame_prompt": ["Two figures on a hill at sunset.", "Smiling boy in orange light."],
                    "cut": [True, True],
                },
            ],
        }
    )


@pytest.fixture
def base_story() -> dict[str, Any]:
    return story()


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """write(data_or_text, name="story.json") -> path; dicts are written as JSON, str as text,
    bytes as they are."""

    def _write(content: Any, name: str = "story.json") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_text(json.dumps(content, indent=2), encoding="utf-8")
        return path

    return _write


@pytest.fixture
def png(tmp_path: Path) -> Callable[..., Path]:
    """png(relative_path, color) -> path of a small solid-colour PNG under tmp_path."""

    def _png(relative: str, color: tuple[int, int, int] = (200, 40, 40)) -> Path:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), color).save(path)
        return path

    return _png
