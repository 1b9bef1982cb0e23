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
clip, the tail frames and the memory update are on disk. A run.json of an older
format version is read in the current layout (``upgrade_record``) and written in
it by the next render, so old run folders resume with their finished shots.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from storymem_cli.errors import BusyError, InvalidInputError, StorymemError
from storymem_cli.render.atomic import (
    atomic_path,
    atomic_write_json,
    final_name_of_temp,
    remove_stale_temps,
)

RUN_FORMAT = "storymem-run"
# 3: shots counted from 1 for people (shot records have "shot", "shot_in_scene" counts from 1) and a
#    first shot from reference images is "mr2v" (2: "m2v"); 2: the settings' runtime options nested
#    under "runtime" (1: flat beside the others).
RUN_FORMAT_VERSION = 3
OLDEST_READABLE = 1
# Format 1's settings keys that format 2 keeps under settings["runtime"] (models.runtime.RuntimeOptions).
FORMAT_1_RUNTIME_KEYS = ("offload", "device", "dtype", "vae_tiling", "attention_backend", "cache", "cache_threshold",
                         "cache_interval", "compile", "quantize")  # fmt: skip
# What a render writes (and --restart removes), by exact name. Nothing else in the folder is
# touched, also inside shots/ and memory/ (docs/run-folder.md, "What storymem owns").
LOCK_NAME = ".storymem.lock"  # held while a render writes the folder (flock, released on exit or kill)
PREVIEW_NAME = "preview.png"  # one frame per shot (render/preview.py)
OWNED_NAMES = ("run.json", "script.json", "story.mp4", PREVIEW_NAME, "shots", "memory", "memory.json")
ROOT_FILES = ("run.json", "script.json", "story.mp4", PREVIEW_NAME)
_SHOT_FILE = re.compile(r"^shot_\d{3,}(\.mp4|\.tail\.npz)$")


class FolderBusyError(BusyError):
    """Another storymem process holds the run folder's lock (it is rendering that story now)."""


def _upgrade_shot(shot: Any) -> Any:
    """A shot record (or planned shot) of format 1 or 2 in format 3's numbering and mode names."""
    if not isinstance(shot, dict) or not isinstance(shot.get("index"), int):
        return shot
    upgraded = {"index": shot["index"], "shot": shot["index"] + 1, **shot}
    if isinstance(shot.get("shot_in_scene"), int):
        upgraded["shot_in_scene"] = shot["shot_in_scene"] + 1
    if shot["index"] == 0 and shot.get("mode") == "m2v":  # a first shot is M2V only from references
        upgraded["mode"] = "mr2v"
    return upgraded


def upgrade_record(record: dict[str, Any]) -> dict[str, Any]:
    """A run.json record of format version 1 or later in the current layout; an upgraded one says
    ``upgraded_from`` (the version on disk), so that a render writes it again in this format."""
    version = record.get("format_version")
    if version not in (1, 2):
        return record
    upgraded = {**record, "format_version": RUN_FORMAT_VERSION, "upgraded_from": version}
    if version == 1 and isinstance(record.get("settings"), dict):
        settings = dict(record["settings"])
        settings["runtime"] = {key: settings.pop(key) for key in FORMAT_1_RUNTIME_KEYS if key in settings}
        upgraded["settings"] = settings
    for key in ("shots", "planned_shots"):
        if isinstance(record.get(key), list):
            upgraded[key] = [_upgrade_shot(shot) for shot in record[key]]
    return upgraded


def is_root_file(name: str) -> bool:
    return name in ROOT_FILES


def is_shot_file(name: str) -> bool:
    """A clip or tail-frames file of :class:`RunFolder` (``shot_001.mp4``, ``shot_001.tail.npz``)."""
    return bool(_SHOT_FILE.match(name))


def _remove_owned(folder: Path, owned: Callable[[str], bool]) -> None:
    """Delete the files in ``folder`` that ``owned`` accepts (and their temps); the folder too if
    that leaves it empty. Anything else stays."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        final = final_name_of_temp(entry.name)
        if (owned(entry.name) or (final is not None and owned(final))) and (entry.is_file() or entry.is_symlink()):
            entry.unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()  # only succeeds when empty


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
        """The saved run.json in the current layout (``upgrade_record``), or None when the folder holds
        no run yet."""
        if not self.run_json.exists():
            return None
        from storymem_cli.jsonio import load_json
        from storymem_cli.render.run_record import RESTART_HINT, first_damaged_shot

        record = load_json(self.run_json, hint=RESTART_HINT)
        if not isinstance(record, dict) or record.get("format") != RUN_FORMAT:
            raise InvalidInputError(
                f"{self.run_json} is not a storymem run file",
                hint="choose another output folder with -o",
            )
        version = record.get("format_version")
        if not (type(version) is int and OLDEST_READABLE <= version <= RUN_FORMAT_VERSION):
            raise InvalidInputError(
                f"{self.run_json} has run format version {version}; "
                f"this storymem reads versions {OLDEST_READABLE} to {RUN_FORMAT_VERSION}",
                hint="pass --restart to render it again with this version, or use another -o",
            )
        record = upgrade_record(record)
        damaged = first_damaged_shot(self.run_json, record)
        if damaged:
            record["damaged_shot"] = damaged  # (index, why); not written back: the next record is built afresh
        return record

    def write_record(self, record: dict[str, Any]) -> None:
        atomic_write_json(self.run_json, {"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION, **record})

    # --- tail frames (lossless, unlike the mp4) ------------------------------------------------

    def save_tail(self, index: int, frames: np.ndarray) -> None:
        with atomic_path(self.tail(index)) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(handle, frames=frames)

    def load_tail(self, index: int) -> np.ndarray:
        with np.load(self.tail(index), allow_pickle=False) as data:
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
        from storymem_cli.memory.bank import is_bank_file, is_bank_json_temp

        remove_stale_temps(self.root, is_root_file)
        remove_stale_temps(self.shots_dir, is_shot_file)
        _remove_owned_temps(self.root, is_bank_json_temp)
        _remove_owned_temps(self.root / "memory", lambda name: name.startswith(".") and is_bank_file(name))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock on the folder: two renders writing one folder would corrupt it."""
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks here; one render per folder is on the user
            yield
            return
        lock = self.root / LOCK_NAME
        try:
            handle = open(lock, "a+")  # noqa: SIM115  closed by the with below
        except IsADirectoryError:
            raise InvalidInputError(
                f"{lock} is a folder; storymem keeps the lock of the run folder in a file of this name",
                hint=f"remove or rename {lock} (storymem never creates it as a folder), or choose another -o",
            ) from None
        except OSError as err:
            raise_os_error(err, lock)
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise FolderBusyError(
                    f"another storymem process (a render or add-reference) is writing {self.root}",
                    hint="wait for it to finish, or use another folder with -o",
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def foreign_content(self) -> list[str]:
        """Names of our files present without a run.json (another tool's folder, or a damaged run)."""
        from storymem_cli.memory.bank import MEMORY_JSON, is_bank_file

        found = [name for name in (*ROOT_FILES, MEMORY_JSON) if name != "run.json" and (self.root / name).is_file()]
        for name, owned in (("shots", is_shot_file), ("memory", is_bank_file)):
            folder = self.root / name
            if folder.is_dir() and any(owned(entry.name) for entry in folder.iterdir()):
                found.append(name)
        return found

    def clear(self, keep: tuple[str, ...] = ()) -> None:
        """Remove what a render wrote here (--restart), except ``keep`` (names of OWNED_NAMES).
        Only files storymem names: a user's files, also inside shots/ and memory/, stay."""
        from storymem_cli.memory.bank import (
            MEMORY_JSON,
            is_bank_file,
            is_bank_json_temp,
        )

        for name in (*ROOT_FILES, MEMORY_JSON):
            if name not in keep:
                with contextlib.suppress(FileNotFoundError):
                    (self.root / name).unlink()
        if "shots" not in keep:
            _remove_owned(self.shots_dir, is_shot_file)
        if "memory" not in keep:
            _remove_owned(self.root / "memory", is_bank_file)
        if MEMORY_JSON not in keep:
            _remove_owned_temps(self.root, is_bank_json_temp)


def _remove_owned_temps(folder: Path, owned: Callable[[str], bool]) -> None:
    for entry in folder.iterdir() if folder.is_dir() else ():
        if owned(entry.name) and entry.is_file():
            entry.unlink()


FULL_DISK_BYTES = 16 * 1024 * 1024  # less free than this: a broken pipe to ffmpeg means the disk filled up


def _disk_nearly_full(where: Path) -> bool:
    for folder in (where, *where.parents):
        if folder.is_dir():
            try:
                return shutil.disk_usage(folder).free < FULL_DISK_BYTES
            except OSError:
                return False
    return False


def raise_os_error(err: OSError, where: Path) -> None:
    """Turn an OSError while writing into a message a user can act on."""
    if err.errno == errno.ENOSPC:
        raise StorymemError(
            f"the disk is full while writing {where}",
            hint="free some space and run the same command again: finished shots are kept",
        ) from err
    if err.errno == errno.EPIPE and _disk_nearly_full(where):
        # ffmpeg dies on a full disk and imageio only sees the pipe to it break.
        raise StorymemError(
            f"the disk is full while writing {where} (ffmpeg stopped)",
            hint="free some space and run the same command again: finished shots are kept",
        ) from err
    if err.errno in (
        errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.ENAMETOOLONG,
    ):
        raise InvalidInputError(
            f"cannot write to the output folder {where}: {err.strerror}",
            hint="choose a writable folder with -o",
        ) from err
    raise StorymemError(f"cannot write {where}: {err}") from err
