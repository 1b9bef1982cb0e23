"""Is what a run folder says it finished still there, unchanged? (docs/run-folder.md, "Damage")

A shot record names the files it wrote (with their sha256 since issue 22) and the memory entries
it read and added. Before a run keeps a finished shot it checks all of them; the first shot
whose files or memory cannot be trusted, and every shot after it, is rendered again. That
repairs the folder exactly: seeds, memory and continuation frames are restored from the
shots before it, so the new frames are the ones an undamaged run has.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storymem_cli.errors import InvalidInputError

CHUNK = 1 << 20  # hash files in 1 MiB pieces: clips of real-size shots are tens of MB


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def count_frames(path: Path) -> int | None:
    """Frames ffmpeg decodes from a video, or None when it cannot read it at all."""
    import imageio_ffmpeg

    try:
        frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    except (OSError, RuntimeError, ValueError):
        return None
    return frames


def _file_problem(path: Path, recorded_sha: str | None, fallback: Any) -> str | None:
    if not path.is_file():
        return f"{path.name} is missing"
    if recorded_sha is not None:
        return None if file_sha256(path) == recorded_sha else f"{path.name} is not the file this shot wrote"
    return fallback(path)  # a record from before the hashes were written: check what can be checked


def shot_files_problem(root: Path, record: dict[str, Any]) -> str | None:
    """What is wrong with a finished shot's clip and tail frames, or None."""
    import numpy as np

    def clip_ok(path: Path) -> str | None:
        frames = count_frames(path)
        if frames != record.get("trimmed_frames"):
            return f"{path.name} holds {frames} frames, not {record.get('trimmed_frames')}"
        return None

    def tail_ok(path: Path) -> str | None:
        try:
            with np.load(path, allow_pickle=False) as data:
                data["frames"].shape  # noqa: B018  reading the array is the check
        except Exception:  # noqa: BLE001  zipfile, numpy and OS errors all mean "not a tail file"
            return f"{path.name} cannot be read"
        return None

    return _file_problem(root / record["path"], record.get("clip_sha256"), clip_ok) or _file_problem(
        root / record["tail"], record.get("tail_sha256"), tail_ok
    )


@dataclass(frozen=True)
class Untrusted:
    """The first shot that must be rendered again, and why."""

    shot: int  # 0-based
    reason: str


def first_untrusted_shot(root: Path, records: Sequence[dict[str, Any]], bank: Any) -> Untrusted | None:
    """Check kept shots in order: their files, the memory they read, the keyframes they added
    (present in memory.json and their PNG matching the recorded sha256). ``bank`` is the
    folder's MemoryBank, or None when it has no memory.json."""
    by_id = {} if bank is None else {entry.id: entry for entry in bank.entries}
    for record in records:
        index = record["index"]
        problem = shot_files_problem(root, record)
        if problem:
            return Untrusted(index, problem)
        for kind, ids in (("read", record.get("memory_ids", [])), ("added", record.get("keyframe_ids", []))):
            for entry_id in ids:
                entry = by_id.get(entry_id)
                if entry is None:
                    where = "memory.json is missing" if bank is None else f"memory.json has no entry {entry_id}"
                    return Untrusted(index, f"it {kind} memory entry {entry_id}, but {where}")
                damage = bank.image_problem(entry)
                if damage and entry.role == "reference" and entry.source.origin == "user":
                    # Not render output: rendering again cannot bring the user's image back.
                    raise InvalidInputError(
                        f"{root}: reference {entry.source.name!r} ({entry_id}): {damage}",
                        hint=f"pin the image again: storymem add-reference {root} --remove {entry_id}, then "
                        f"storymem add-reference {root} IMAGE --name {entry.source.name!r}",
                    )
                if damage:
                    return Untrusted(index, f"it {kind} memory entry {entry_id}, but {damage}")
    return None
