"""The run folder: where a story's results and its resume state live (docs/run-folder.md).

```
RUN_DIR/
  run.json              format version, script sha256, settings, model, one record per finished shot
  script.json           the script as rendered (canonical JSON)
  story.mp4             all shots joined in order
  preview.png           one frame per shot with its mode: the story at a glance
  shots/shot_001.mp4    one clip per shot (1-based global number), already trimmed
  shots/shot_001.tail.npz  the shot's last frames, lossless: the next shot continues from them
  memory/, memory.json  the memory bank (written by memory.bank.MemoryBank)
```

run.json is rewritten atomically after every shot. A shot counts as finished
only when its record says ``"status": "done"``; the record is written after the
clip, the tail frames and the memory update are on disk.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from storymem_cli.errors import InvalidInputError, StorymemError
from storymem_cli.render.atomic import (
    atomic_path,
    atomic_write_json,
    remove_stale_temps,
)

RUN_FORMAT = "storymem-run"
RUN_FORMAT_VERSION = 1
# What a render writes (and --restart removes). Nothing else in the folder is touched.
LOCK_NAME = ".storymem.lock"  # held while a render writes the folder (flock, released on exit or kill)
PREVIEW_NAME = "preview.png"  # one frame per shot (render/preview.py)
OWNED_NAMES = ("run.json", "script.json", "story.mp4", PREVIEW_NAME, "shots", "memory", "memory.json")


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def script_json(self) -> Path:
        return self.root / "script.json"

    @property
    def story_mp4(self) -> Path:
        return self.root / "story.mp4"

    @property
    def shots_dir(self) -> Path:
        return self.root / "shots"

    def clip(self, index: int) -> Path:
        """Clip of shot ``index`` (0-based); the file name counts from 1."""
        return self.shots_dir / f"shot_{index + 1:03d}.mp4"

    def tail(self, index: int) -> Path:
        return self.shots_dir / f"shot_{index + 1:03d}.tail.npz"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # --- run.json ---------------------------------------------------------------------------

    def read_record(self) -> dict[str, Any] | None:
        """The saved run.json, or None when the folder holds no run yet."""
        if not self.run_json.exists():
            return None
        try:
            record = json.loads(self.run_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InvalidInputError(
                f"{self.run_json} is not readable run metadata: {err}",
                hint="pass --restart to render this story from scratch in this folder",
            ) from None
        if not isinstance(record, dict) or record.get("format") != RUN_FORMAT:
            raise InvalidInputError(
                f"{self.run_json} is not a storymem run file",
                hint="choose another output folder with -o",
            )
        if record.get("format_version") != RUN_FORMAT_VERSION:
            raise InvalidInputError(
                f"{self.run_json} has run format version {record.get('format_version')}; "
                f"this storymem reads version {RUN_FORMAT_VERSION}",
                hint="pass --restart to render it again with this version, or use another -o",
            )
        return record

    def write_record(self, record: dict[str, Any]) -> None:
        atomic_write_json(self.run_json, {"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION, **record})

    # --- tail frames (lossless, unlike the mp4) ------------------------------------------------

    def save_tail(self, index: int, frames: np.ndarray) -> None:
        with atomic_path(self.tail(index)) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(handle, frames=frames)

    def load_tail(self, index: int) -> np.ndarray:
        with np.load(self.tail(index)) as data:
            return data["frames"]

    # --- folder life cycle -------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the folder (and shots/) and check it is writable."""
        try:
            self.shots_dir.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".storymem-write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise_os_error(err, self.root)

    def remove_stale_temps(self) -> None:
        """Drop temporary files a killed render left behind (call with the lock held)."""
        remove_stale_temps(self.root)
        remove_stale_temps(self.shots_dir)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock on the folder: two renders writing one folder would corrupt it."""
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks here; one render per folder is on the user
            yield
            return
        with open(self.root / LOCK_NAME, "a+") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StorymemError(
                    f"another storymem render is writing {self.root}",
                    hint="wait for it to finish, or render into another folder with -o",
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def foreign_content(self) -> list[str]:
        """Names of our files present without a run.json (another tool's folder, or a damaged run)."""
        found = []
        for name in OWNED_NAMES:
            path = self.root / name
            if name != "run.json" and (path.is_file() or (path.is_dir() and any(path.iterdir()))):
                found.append(name)
        return found

    def clear(self, keep: tuple[str, ...] = ()) -> None:
        """Remove what a render wrote here (--restart), except ``keep``. Other files in the folder
        are left alone."""
        for name in OWNED_NAMES:
            if name in keep:
                continue
            path = self.root / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()


def raise_os_error(err: OSError, where: Path) -> None:
    """Turn an OSError while writing into a message a user can act on."""
    if err.errno == errno.ENOSPC:
        raise StorymemError(
            f"the disk is full while writing {where}",
            hint="free some space and run the same command again: finished shots are kept",
        ) from err
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST):
        raise InvalidInputError(
            f"cannot write to the output folder {where}: {err.strerror}",
            hint="choose a writable folder with -o",
        ) from err
    raise StorymemError(f"cannot write {where}: {err}") from err
