"""preview.png: one frame of every shot on a contact sheet, the shot's mode under it.

A story can then be looked at without downloading or playing story.mp4 (a remote GPU box, a
README); it is written beside story.mp4 each time the story is joined.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from storymem_cli.render.atomic import atomic_path

PREVIEW_COLUMNS = 4  # 8-shot stories (ST-Bench has 7-12) come out as two rows


def middle_frames(video: Path, shots: Sequence[dict[str, Any]]) -> np.ndarray:
    """Each shot's middle frame, away from the cut and the continuation seam, read from ``video``
    (story.mp4: the shots' clips joined by stream copy, so the same frames as each clip)."""
    from storymem_cli.render.video import read_frames_at

    middles, start = [], 0
    for shot in shots:
        middles.append(start + shot["trimmed_frames"] // 2)
        start += shot["trimmed_frames"]
    return read_frames_at(video, middles)


def shot_caption(shot: dict[str, Any]) -> list[str]:
    return [f"shot {shot['index'] + 1}: {shot['mode']}", f"scene {shot['scene']}, seed {shot['seed']}", shot["prompt"]]


def write_preview(video: Path, shots: Sequence[dict[str, Any]], path: Path) -> None:
    """Draw the finished ``shots`` (run.json records, in the order ``video`` joins them) into ``path``."""
    from PIL import Image

    from storymem_cli.memory.sheet import render_contact_sheet

    images = list(middle_frames(video, shots))
    sheet = render_contact_sheet(images, [shot_caption(shot) for shot in shots], columns=PREVIEW_COLUMNS)
    with atomic_path(path) as tmp:
        Image.fromarray(sheet).save(tmp, format="PNG")
