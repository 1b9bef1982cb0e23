"""Fixtures for eval: small synthetic run folders in the layout of docs/ARCHITECTURE.md."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

# Made-up prompts (ST-Bench scripts must not be copied into the repository).
PROMPTS = [
    "A red fox trots across a snowy meadow at dawn, wide shot.",
    "Close-up of the red fox sniffing the snow, breath visible in the cold air.",
    "An old lighthouse on a cliff above a grey sea, slow aerial push-in.",
    "The lighthouse keeper climbs a spiral staircase holding a lantern.",
]
OVERVIEW = "A fox and a lighthouse keeper share a winter morning by the sea."


def write_clip(path: Path, n_frames: int, seed: int, size: tuple[int, int] = (32, 48)) -> None:
    """A tiny mp4 of smooth random colour blobs (compresses and decodes quickly)."""
    import imageio.v3 as iio

    g = np.random.default_rng(seed)
    base = g.integers(0, 256, size=(4, 6, 3)).astype(np.float32)
    frames = []
    for t in range(n_frames):
        small = np.clip(base + 8 * t, 0, 255).astype(np.uint8)
        frames.append(np.kron(small, np.ones((size[0] // 4, size[1] // 6, 1), dtype=np.uint8)))
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.stack(frames), fps=8, codec="libx264", macro_block_size=1)


def write_script(path: Path, prompts: list[str], name: str = "Winter Morning", overview: str = OVERVIEW) -> None:
    half = max(1, len(prompts) // 2)
    scenes = [{"scene_num": 1, "video_prompts": prompts[:half], "cut": [True] * half}]
    if prompts[half:]:
        scenes.append({"scene_num": 2, "video_prompts": prompts[half:], "cut": [True] * len(prompts[half:])})
    path.write_text(json.dumps({"story_name": name, "story_overview": overview, "scenes": scenes}), encoding="utf-8")


def make_run(root: Path, prompts: list[str] = PROMPTS, frames: list[int] | None = None, name: str = "Winter Morning") -> Path:
    """A run folder: script.json, run.json listing shots/shot_NNN.mp4, the clips."""
    frames = frames or [9 + 2 * i for i in range(len(prompts))]
    root.mkdir(parents=True, exist_ok=True)
    write_script(root / "script.json", prompts, name=name)
    shots = []
    for i, (prompt, n) in enumerate(zip(prompts, frames)):
        rel = f"shots/shot_{i + 1:03d}.mp4"
        write_clip(root / rel, n, seed=i)
        shots.append({"index": i, "prompt": prompt, "frames": n, "path": rel, "status": "done"})
    (root / "run.json").write_text(json.dumps({"format_version": 1, "shots": shots}), encoding="utf-8")
    return root


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path / "run-a")
