"""Output paths checked before any work starts: a bad one is named with its option, exit 2.

Checks what can be known without writing: line breaks and other control characters (ffmpeg's
concat lists and most tools cannot carry them), names longer than the file system allows, a
file where a folder must go (or a folder where a file must go), and parents that are files.
"""

from __future__ import annotations

import os
from pathlib import Path

from storymem_cli.errors import InvalidInputError

NAME_MAX = 255  # bytes per path component on ext4, XFS, btrfs, APFS and NTFS
PATH_MAX = 4096  # Linux's limit for a whole path


def _limits(path: Path) -> tuple[int, int]:
    for folder in path.parents:  # the path itself may be the over-long name
        try:
            if folder.is_dir():
                return os.pathconf(folder, "PC_NAME_MAX"), os.pathconf(folder, "PC_PATH_MAX")
        except (OSError, ValueError, AttributeError):  # an over-long parent; no pathconf on Windows
            continue
    return NAME_MAX, PATH_MAX


def check_output_path(path: Path, option: str, *, folder: bool) -> None:
    """Refuse ``path`` for ``option`` (e.g. "-o") when it cannot be written as a file
    (``folder=False``) or as a folder (``folder=True``)."""
    text = str(path)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise InvalidInputError(
            f"{option} {text!r}: the path contains a line break or another control character",
            hint="choose a path without them",
        )
    name_max, path_max = _limits(path)
    long = next((part for part in path.parts if len(os.fsencode(part)) > name_max), None)
    if long is not None:
        raise InvalidInputError(
            f"{option} {text}: the name {long[:40]}... is longer than the {name_max} bytes a file name may have",
            hint="choose a shorter name",
        )
    if len(os.fsencode(str(path.absolute()))) > path_max:
        raise InvalidInputError(f"{option} {text}: the path is longer than {path_max} bytes", hint="choose a shorter path")
    if path.exists():
        if folder and not path.is_dir():
            raise InvalidInputError(f"{option} {text}: is a file, not a folder", hint="choose a folder path")
        if not folder and path.is_dir():
            raise InvalidInputError(f"{option} {text}: is a folder, not a file", hint="give a file path, e.g. out.png")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InvalidInputError(
                    f"{option} {text}: {parent} is a file, so nothing can be written under it",
                    hint="choose a path inside a folder",
                )
            break
