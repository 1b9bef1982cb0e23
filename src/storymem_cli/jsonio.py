"""One reader for every JSON file storymem opens: scripts, run.json, memory.json, model folders'
configs, training indexes, `eval --json` results.

Each file is read with the same limits (a regular file, at most ``max_bytes``, UTF-8, nested at
most ``MAX_DEPTH`` levels) and a damaged one is named with the JSON path of what is wrong and
the caller's way out (``hint``). ``RecursionError`` never escapes: the parser's own recursion
is caught, and the depth is checked without recursion before any other code (pydantic,
``json.dumps``, diffusers) walks the data. Torch-free: ``validate`` imports this.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from storymem_cli.errors import InvalidInputError

MAX_DEPTH = 64  # our deepest files nest ~6 levels (run.json settings.runtime), hub configs ~5
MAX_JSON_BYTES = 64 * 1024 * 1024  # run.json of a 5 MB script, a large tokenizer.json: well under


class JsonFileError(InvalidInputError):
    """A JSON file storymem reads is missing, too large, not JSON, or not the shape it must have."""

    def __init__(self, path: Path, problem: str, *, where: str = "", hint: str | None = None):
        self.path = Path(path)
        self.where = where
        self.problem = problem
        super().__init__(f"{path}{': ' + where if where else ''}: {problem}", hint=hint)


def json_path(loc: tuple[str | int, ...] | list[str | int]) -> str:
    """("scenes", 1, "cut", 2) -> "scenes[1].cut[2]"."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def read_bytes(path: Path, *, max_bytes: int = MAX_JSON_BYTES, hint: str | None = None) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; a device, pipe or folder is refused
    before it is opened (``/dev/zero`` never ends, a pipe waits for a writer)."""
    path = Path(path)
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise JsonFileError(path, "is a folder, not a JSON file", hint=hint)
        if not stat.S_ISREG(info.st_mode):
            raise JsonFileError(path, "is not a regular file (a device, pipe or socket)", hint=hint)
        if info.st_size > max_bytes:
            raise JsonFileError(path, f"is {info.st_size} bytes, more than the {max_bytes} this file may have", hint=hint)
        with open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)  # a file that grows while read is still bounded
    except FileNotFoundError:
        raise JsonFileError(path, "file not found", hint=hint) from None
    except OSError as err:
        raise JsonFileError(path, f"cannot be read ({err.strerror or err})", hint=hint) from None
    if len(raw) > max_bytes:
        raise JsonFileError(path, f"is more than {max_bytes} bytes", hint=hint)
    return raw


def too_deep(value: Any, max_depth: int = MAX_DEPTH) -> tuple[str | int, ...] | None:
    """The location of the first container nested more than ``max_depth`` levels, or None.
    Iterative: a value nested thousands of levels deep is walked without recursion."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, loc = stack.pop()
        if isinstance(item, dict):
            children = item.items()
        elif isinstance(item, list):
            children = enumerate(item)
        else:
            continue
        if len(loc) >= max_depth:
            return loc
        stack.extend((child, (*loc, key)) for key, child in children)
    return None


def parse_json(
    path: Path,
    text: str,
    *,
    loads: Callable[[str], Any] = json.loads,
    max_depth: int = MAX_DEPTH,
    hint: str | None = None,
) -> Any:
    """Parse ``text`` (read from ``path``) with ``loads`` (json.loads, or json5's for scripts)
    and check its depth. Syntax errors are left to the caller's ``loads`` exception handling."""
    try:
        data = loads(text)
    except RecursionError:
        data = None
        deep = True
    else:
        deep = too_deep(data, max_depth) is not None
    if deep:
        where = too_deep(data, max_depth) if data is not None else None
        raise JsonFileError(
            path,
            f"is nested more than {max_depth} levels deep (lists or objects inside each other): this is not a file "
            "storymem wrote or reads",
            where=json_path(where) if where else "",
            hint=hint,
        )
    return data


def load_json(
    path: Path | str,
    *,
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_DEPTH,
    hint: str | None = None,
) -> Any:
    """Read, decode and parse one JSON file with the limits above; every failure is a
    :class:`JsonFileError` naming the file (and the JSON path where one applies)."""
    path = Path(path)
    raw = read_bytes(path, max_bytes=max_bytes, hint=hint)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise JsonFileError(path, f"is not UTF-8 text (byte {err.start})", hint=hint) from None
    try:
        return parse_json(path, text, max_depth=max_depth, hint=hint)
    except json.JSONDecodeError as err:
        raise JsonFileError(
            path, f"is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})", hint=hint
        ) from None
    except ValueError as err:  # e.g. an integer too long to convert (Python's int-digits limit)
        raise JsonFileError(path, f"is not valid JSON ({err})", hint=hint) from None


def validation_problem(err: Any) -> tuple[str, str]:
    """(JSON path, message) of a pydantic ValidationError's first error."""
    first = err.errors()[0]
    got = first.get("input")
    shown = "" if isinstance(got, (dict, list)) else f" (got {json.dumps(got)[:60]})" if _jsonable(got) else ""
    return json_path(first["loc"]), f"{first['msg']}{shown}"


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
