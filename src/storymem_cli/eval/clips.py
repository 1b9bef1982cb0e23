"""Finding and reading the shot clips a story is evaluated on."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from storymem_cli.errors import InvalidInputError
from storymem_cli.jsonio import load_json

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".gif")


def natural_key(name: str) -> list[object]:
    """Sort key that puts shot_2 before shot_10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def clips_in_folder(folder: Path) -> list[Path]:
    """Video files directly in `folder`, sorted naturally (one clip per shot, in story order)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInputError(f"--shots {folder}: not a folder", hint="pass the folder holding one clip per shot")
    clips = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
    if not clips:
        raise InvalidInputError(
            f"--shots {folder}: no video files ({', '.join(VIDEO_SUFFIXES)})",
            hint="put one clip per shot in the folder, named so that they sort in story order",
        )
    return sorted(clips, key=lambda p: natural_key(p.name))


def clips_in_run(run_dir: Path) -> list[Path]:
    """The shot clips a run folder's run.json lists (shots[].path, in order)."""
    run_json = Path(run_dir) / "run.json"
    if not run_json.exists():
        raise InvalidInputError(
            f"{run_dir}: no run.json, so not a storymem run folder",
            hint="pass a folder written by `storymem render`, or use --script S --shots DIR",
        )
    run = load_json(run_json, hint="render the story again with `storymem render` (it repairs what it can)")
    if isinstance(run, dict) and run.get("status", "done") != "done":
        raise InvalidInputError(
            f"{run_json}: the render is not finished (status {run.get('status')!r})",
            hint="resume it with `storymem render` before evaluating, or evaluate the finished shots with --script/--shots",
        )
    shots = run.get("shots") if isinstance(run, dict) else None
    if not isinstance(shots, list) or not shots:
        raise InvalidInputError(f"{run_json}: field 'shots' is missing or empty", hint="render the story first")
    paths = []
    for i, shot in enumerate(shots):
        rel = shot.get("path") if isinstance(shot, dict) else None
        if not isinstance(rel, str):
            raise InvalidInputError(f"{run_json}: shots[{i}].path is missing")
        if isinstance(shot, dict) and shot.get("status", "done") != "done":
            raise InvalidInputError(
                f"{run_json}: shots[{i}] has status {shot.get('status')!r}, not 'done'",
                hint="finish (resume) the render before evaluating it",
            )
        path = Path(rel) if Path(rel).is_absolute() else Path(run_dir) / rel
        if not path.is_file():
            raise InvalidInputError(f"{run_json}: shots[{i}].path {rel!r} does not exist in the run folder")
        paths.append(path)
    return paths


def read_clip(path: Path) -> np.ndarray:
    """All frames of a video file: uint8 (F, H, W, 3) RGB."""
    import imageio.v3 as iio

    try:
        frames = np.asarray(iio.imread(Path(path)))
    except Exception as err:  # imageio raises several types for undecodable files
        raise InvalidInputError(f"{path}: cannot read as a video ({type(err).__name__}: {err})") from None
    if frames.ndim == 3:  # a single grey or single-frame image
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise InvalidInputError(f"{path}: no frames decoded (shape {frames.shape})")
    if frames.shape[-1] == 4:
        frames = frames[..., :3]
    return np.ascontiguousarray(frames.astype(np.uint8, copy=False))


def count_frames(path: Path) -> int:
    """Frame count of a video file (ffmpeg decodes it without handing frames to Python)."""
    from imageio_ffmpeg import count_frames_and_secs

    try:
        return int(count_frames_and_secs(str(path))[0])
    except Exception as err:  # ffmpeg failures surface as RuntimeError / OSError / ValueError
        raise InvalidInputError(f"{path}: cannot read as a video ({type(err).__name__}: {err})") from None
