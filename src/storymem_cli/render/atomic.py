"""Writes that a kill at any instant cannot leave half done.

Every file of a run folder is written under a temporary name in the same folder,
flushed to disk, then renamed over its final name (``os.replace`` is atomic on
POSIX and Windows). A later run only ever sees the old file or the new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

TEMP_MARK = ".tmp-"  # temp names: "<stem>.tmp-<pid>.<suffix>" (the suffix stays, so tools see the format)
# A temp name this module made: the final name's stem, the mark, a process id, the final suffix.
_TEMP_NAME = re.compile(r"^(?P<stem>.+)" + re.escape(TEMP_MARK) + r"\d+(?P<suffix>\.[^.]+)?$")


def temp_path_for(path: Path) -> Path:
    """The temporary name a write of ``path`` goes through (same folder, same suffix)."""
    return path.with_name(f"{path.stem}{TEMP_MARK}{os.getpid()}{path.suffix}")


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the folder entry is on disk (POSIX); not possible on Windows.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def final_name_of_temp(name: str) -> str | None:
    """The file a temp name of :func:`temp_path_for` stands in for, or None if ``name`` is not one."""
    match = _TEMP_NAME.match(name)
    return None if match is None else match["stem"] + (match["suffix"] or "")


def remove_stale_temps(folder: Path, owned: Callable[[str], bool]) -> list[Path]:
    """Delete temp files a killed run left in ``folder``: only temps of :func:`temp_path_for` whose
    final name ``owned`` accepts, so a user's ``notes.tmp-1.txt`` or ``report.tmp-final.txt`` stays."""
    removed = []
    if folder.is_dir():
        for entry in folder.iterdir():
            final = final_name_of_temp(entry.name)
            if final is not None and owned(final) and entry.is_file():
                entry.unlink()
                removed.append(entry)
    return removed
