"""Training datasets: a folder of clips plus ``index.json`` (groups of related clips, captions).

The format is the same for the toy world and for a user's own footage::

    DATASET/
      index.json
      clips/g000000_0.npz ...     any layout: paths in the index are relative to DATASET/

``index.json`` (:class:`DatasetIndex`)::

    {"format": "storymem-clips", "version": 1, "fps": 16,
     "groups": [{"id": "g000000",
                 "clips": [{"path": "clips/g000000_0.npz",
                            "caption": "a red circle with a hat hops to the left on the beach",
                            "memory_caption": "the hero hops to the left on the beach",
                            "meta": {"shape": "circle"}}]}]}

A *group* is clips that share what memory should carry (the same character, the
same place): during training one clip of a group is the target and frames of
the others are its memory. ``memory_caption``, when given, is the caption used
for samples that have memory: it may leave out what memory shows. A clip file
is ``.npz`` (array ``frames``, uint8 (F, H, W, 3), lossless: the toy world
writes these), a folder of PNG frames (sorted by name), or a video file
(``.mp4``, ``.webm``, ``.mov``, ``.mkv``; decoded with imageio-ffmpeg).

    python -m storymem_cli.toy.dataset --out DATASET --clips 20000 --seed 0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zipfile
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from storymem_cli.errors import InvalidInputError
from storymem_cli.jsonio import load_json
from storymem_cli.toy.captions import caption
from storymem_cli.toy.render import render_clip
from storymem_cli.toy.world import (
    ACTIONS,
    CLIP_FRAMES,
    FPS,
    FRAME_SIZE,
    SETTINGS,
    Shot,
    random_character,
)

INDEX_NAME = "index.json"
FORMAT_NAME = "storymem-clips"
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv")
DATASET_STREAM = 2  # first word of every toy dataset group's seed sequence (stories use 1)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClipEntry(_Strict):
    path: str = Field(description="clip file or PNG folder, relative to the dataset folder, '/' separated")
    caption: str = Field(min_length=1, description="describes the clip fully; used for samples without memory")
    memory_caption: str | None = Field(
        None, min_length=1, description="used instead of caption when the sample has memory from its group"
    )
    meta: dict[str, str | int | float] = Field(default_factory=dict, description="free-form facts, e.g. ground truth")

    @field_validator("path")
    @classmethod
    def _relative_inside(cls, value: str) -> str:
        p = PurePosixPath(value)
        if not value or p.is_absolute() or ".." in p.parts or "\\" in value:
            raise ValueError("must be a relative path inside the dataset folder, '/' separated, without '..'")
        return value


class ClipGroup(_Strict):
    id: str = Field(min_length=1)
    clips: list[ClipEntry] = Field(min_length=1)


class DatasetIndex(_Strict):
    format: Literal["storymem-clips"] = FORMAT_NAME
    version: Literal[1] = 1
    fps: int = Field(FPS, ge=1, description="frame rate the clips are meant to play at")
    groups: list[ClipGroup] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> DatasetIndex:
        seen: set[str] = set()
        for i, g in enumerate(self.groups):
            if g.id in seen:
                raise ValueError(f"groups[{i}].id {g.id!r} is used by an earlier group; ids must be unique")
            seen.add(g.id)
        return self

    def clip_count(self) -> int:
        return sum(len(g.clips) for g in self.groups)


def _index_path(path: Path) -> Path:
    return path / INDEX_NAME if path.is_dir() else path


def load_index(path: Path | str, check_files: bool = True) -> tuple[DatasetIndex, Path]:
    """Read and validate a dataset index (the folder or its index.json). Returns the index and the
    folder clip paths are relative to. InvalidInputError names the file and the bad field."""
    index_path = _index_path(Path(path))
    if not index_path.exists():
        raise InvalidInputError(f"{index_path}: no dataset index here",
                                hint=f"a dataset is a folder with {INDEX_NAME}; see docs/toy-world.md")
    data = load_json(index_path, hint=f"see docs/toy-world.md for the format of {INDEX_NAME}")
    try:
        index = DatasetIndex.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in err.errors()[:10]
        )
        raise InvalidInputError(f"{index_path}: invalid dataset index: {problems}") from None
    root = index_path.parent
    if check_files:
        for gi, group in enumerate(index.groups):
            for ci, clip in enumerate(group.clips):
                if not (root / clip.path).exists():
                    raise InvalidInputError(
                        f"{index_path}: groups[{gi}].clips[{ci}].path: {clip.path!r} does not exist in {root}"
                    )
    return index, root


def write_index(folder: Path | str, index: DatasetIndex) -> Path:
    """Write ``index.json`` atomically (temp file + rename), so a reader never sees half of one."""
    path = Path(folder) / INDEX_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(index.model_dump_json(indent=1, exclude_defaults=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_clip(path: Path | str) -> np.ndarray:
    """A clip as uint8 (F, H, W, 3) RGB, from .npz, a folder of PNG frames or a video file."""
    import imageio.v3 as iio  # not needed to import the module

    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".png")
        if not files:
            raise InvalidInputError(f"{path}: a clip folder must hold PNG frames; found none")
        frames = np.stack([iio.imread(p) for p in files])
    elif path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                if "frames" not in data:
                    raise InvalidInputError(f"{path}: an .npz clip needs an array named 'frames'")
                frames = data["frames"]
        except ValueError as err:  # an object array: numpy would have to unpickle it
            raise InvalidInputError(
                f"{path}: refused: the clip holds pickled Python objects, and storymem never unpickles data files",
                hint="save the frames as a plain uint8 array: numpy.savez_compressed(path, frames=frames)",
            ) from None
        except (OSError, EOFError, zipfile.BadZipFile) as err:
            raise InvalidInputError(f"{path}: not a readable .npz clip ({err})") from None
    elif path.suffix.lower() in VIDEO_SUFFIXES:
        frames = iio.imread(path, index=None)
    else:
        raise InvalidInputError(f"{path}: unknown clip type; use .npz, a PNG folder or {', '.join(VIDEO_SUFFIXES)}")
    if frames.ndim == 4 and frames.shape[-1] == 4:
        frames = frames[..., :3]  # RGBA PNGs: drop alpha
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise InvalidInputError(f"{path}: expected uint8 RGB frames (F, H, W, 3), got {frames.dtype} {frames.shape}")
    return frames


def save_clip(path: Path, frames: np.ndarray) -> None:
    np.savez_compressed(path, frames=frames)


def toy_group(seed: int, group: int, clips: int, frames: int = CLIP_FRAMES, size: int = FRAME_SIZE):
    """One toy group: a character in ``clips`` shots (settings distinct while there are enough),
    as (Shot, clip) pairs. A pure function of (seed, group), so groups can be made in any order."""
    rng = np.random.default_rng([DATASET_STREAM, seed, group])
    character = random_character(rng)
    names = list(SETTINGS)
    settings = [str(s) for s in rng.permutation(names)]
    out = []
    for i in range(clips):
        shot = Shot(character, str(rng.choice(list(ACTIONS))), settings[i % len(names)])
        out.append((shot, render_clip(shot, rng, frames, size)))
    return out


def write_toy_dataset(
    out: Path | str,
    groups: int,
    clips_per_group: int = 4,
    seed: int = 0,
    frames: int = CLIP_FRAMES,
    size: int = FRAME_SIZE,
    progress=None,
) -> DatasetIndex:
    """Write ``groups`` toy groups of ``clips_per_group`` clips to ``out`` (created; an existing
    index.json there is an error) and return the index. ``progress(done, total)`` per group."""
    out = Path(out)
    if (out / INDEX_NAME).exists():
        raise InvalidInputError(f"{out}: already holds a dataset ({INDEX_NAME})", hint="choose an empty folder")
    (out / "clips").mkdir(parents=True, exist_ok=True)
    index_groups = []
    for g in range(groups):
        entries = []
        for i, (shot, clip) in enumerate(toy_group(seed, g, clips_per_group, frames, size)):
            rel = f"clips/g{g:06d}_{i}.npz"
            save_clip(out / rel, clip)
            ch = shot.character
            meta = {"shape": ch.shape, "colour": ch.colour, "accessory": ch.accessory,
                    "action": shot.action, "setting": shot.setting}
            entries.append(ClipEntry(path=rel, caption=caption(shot), memory_caption=caption(shot, role="hero"),
                                     meta=meta))
        index_groups.append(ClipGroup(id=f"g{g:06d}", clips=entries))
        if progress is not None:
            progress(g + 1, groups)
    index = DatasetIndex(fps=FPS, groups=index_groups)
    write_index(out, index)
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m storymem_cli.toy.dataset",
        description=(
            "Write a toy-world training dataset: groups of clips of one character in different settings, "
            "as lossless .npz clips plus index.json (format: docs/toy-world.md). Prints a JSON summary to "
            "stdout; progress goes to stderr. Exit codes: 0 success, 2 invalid input."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="dataset folder to create (must not hold an index)")
    parser.add_argument("--clips", type=int, required=True, help="number of clips (rounded up to whole groups)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed: the same seed writes the same clips")
    parser.add_argument("--clips-per-group", type=int, default=4, help="clips per group (default: 4)")
    parser.add_argument("--frames", type=int, default=CLIP_FRAMES, help=f"frames per clip, 4k+1 (default: {CLIP_FRAMES})")
    parser.add_argument("--size", type=int, default=FRAME_SIZE, help=f"frame width and height (default: {FRAME_SIZE})")
    args = parser.parse_args(argv)
    if args.clips < 1 or args.clips_per_group < 1 or args.size < 16:
        parser.error("--clips and --clips-per-group must be at least 1, --size at least 16")
    if args.frames < 1 or (args.frames - 1) % 4:
        parser.error(f"--frames must be 4k+1 for the Wan VAE (5, 9, 13, 17, ...), got {args.frames}")

    groups = -(-args.clips // args.clips_per_group)
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done == total or done % 100 == 0:
            print(f"\r{done}/{total} groups", end="\n" if done == total else "", file=sys.stderr, flush=True)

    try:
        index = write_toy_dataset(args.out, groups, args.clips_per_group, args.seed, args.frames, args.size, progress)
    except InvalidInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    seconds = time.perf_counter() - start
    summary = {"out": str(args.out), "groups": len(index.groups), "clips": index.clip_count(),
               "seconds": round(seconds, 2), "clips_per_minute": round(index.clip_count() / seconds * 60)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
