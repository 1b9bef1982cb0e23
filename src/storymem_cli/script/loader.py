"""Read a story script file: bytes -> text -> JSON5 -> validated :class:`StoryScript`.

Every problem of a file is collected, each with its JSON path and what to do, and raised
together as one :class:`ScriptError`. No torch here: ``storymem validate`` imports this.
"""

from __future__ import annotations

import difflib
import json
import re
import stat
from pathlib import Path
from typing import Any

import json5
from pydantic import BaseModel, ValidationError

from storymem_cli.jsonio import JsonFileError, parse_json, read_bytes
from storymem_cli.script.model import SEED_MAX, Character, Reference, Scene, StoryScript
from storymem_cli.script.problems import ScriptError, ScriptProblem, json_path
from storymem_cli.script.rules import normalize_cuts, story_problems, story_warnings

MAX_NUMBER_DIGITS = 100  # seeds are < 2**32, scene numbers small: 100 digits is never a real value
MAX_SCRIPT_BYTES = 5 * 1024 * 1024  # a 30-shot story is ~20 KB; anything this big is not a script

_FORMAT_HINT = (
    'a story script is a JSON object: {"story_name": "...", '
    '"scenes": [{"scene_num": 1, "video_prompts": [...], "cut": [...]}]}'
)


def load_script(path: Path | str) -> tuple[StoryScript, list[ScriptProblem]]:
    """Load and validate a story script. Returns the script and its warnings; raises
    :class:`ScriptError` with every problem found when the script cannot be used."""
    path = Path(path)
    base_dir = path.parent.resolve()
    text = _read_text(path)
    data, problems = _parse(path, text)
    data, warnings = normalize_cuts(data)

    script = None
    try:
        script = StoryScript.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as err:
        problems += _type_problems(err)
    problems += story_problems(data)
    problems += _reference_problems(data, base_dir)
    # An over-long number was reported where it stands; its stand-in (null) says nothing more.
    long_numbers = {p.path for p in problems if "digits, far larger" in p.message}
    problems = [p for p in problems if p.path not in long_numbers or "digits, far larger" in p.message]
    warnings += story_warnings(data)
    if problems or script is None:
        raise ScriptError(path, _unique(problems), warnings=_unique(warnings))
    return script, _unique(warnings)


def _unique(problems: list[ScriptProblem]) -> list[ScriptProblem]:
    return list(dict.fromkeys(problems))


def _fail(path: Path, message: str) -> ScriptError:
    return ScriptError(path, [ScriptProblem("", message)])


def _read_text(path: Path) -> str:
    try:
        raw = read_bytes(path, max_bytes=MAX_SCRIPT_BYTES)
    except JsonFileError as err:
        problem = err.problem
        if problem.startswith("is a folder"):
            problem = "is a folder, not a story script file: give the path of a .json file"
        elif problem.startswith("is not a regular"):
            problem += ": give the path of a .json file"
        elif problem == "file not found":
            problem += ": check the path"
        elif problem.startswith("cannot be read"):
            problem += ": check its permissions"
        else:  # too large
            problem += ": check that this is the right file (a 30-shot story is ~20 KB)"
        raise _fail(path, problem) from None

    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _fail(path, "is UTF-16 text: save it as UTF-8")
    if b"\x00" in raw:
        raise _fail(path, "looks like a binary file, not a JSON story script: " + _FORMAT_HINT)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise _fail(
            path,
            f"is not UTF-8 text (byte 0x{raw[err.start]:02x} at line {line}, column {column}): save the file as UTF-8",
        ) from None
    if not text.strip():
        raise _fail(path, "is empty: " + _FORMAT_HINT)
    return text


class _Object(dict):
    """A JSON object that remembers the keys it saw twice (JSON5 keeps the last silently)."""

    duplicates: list[str]


def _pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    seen: set[str] = set()
    obj.duplicates = [key for key, _ in pairs if key in seen or seen.add(key)]
    return obj


_JSON5_ERROR = re.compile(r"^<string>:(?P<line>\d+) (?P<what>.*?) at column (?P<column>\d+)$")


def _loads(text: str) -> Any:
    """Plain JSON through the standard library (C, ~100x faster than json5's pure Python on a
    script); anything else (comments, trailing commas, a syntax error to word) through JSON5, of
    which JSON is a subset, so both give the same values."""
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_int=_int)
    except json.JSONDecodeError:
        return json5.loads(text, object_pairs_hook=_pairs, parse_int=_int)


def _parse(path: Path, text: str) -> tuple[Any, list[ScriptProblem]]:
    try:
        data = parse_json(path, text, loads=_loads)
    except JsonFileError as err:
        raise _fail(path, err.problem + (f" (at {err.where})" if err.where else "") + ": " + _FORMAT_HINT) from None
    except ValueError as err:
        match = _JSON5_ERROR.match(str(err))
        where = f"line {match['line']}, column {match['column']}: {match['what']}" if match else str(err)
        raise _fail(path, f"syntax error at {where}: fix the JSON (comments and trailing commas are allowed)") from None
    problems: list[ScriptProblem] = []
    return _plain(data, (), problems), problems


class _LongNumber(int):
    """A whole number with more digits than Python converts from text (4300): kept as its digit
    count, so that the problem is named at its key instead of as a syntax error."""

    digits: int


def _int(text: str) -> int:
    if len(text.lstrip("+-")) <= MAX_NUMBER_DIGITS:
        return int(text)
    number = _LongNumber(0)
    number.digits = len(text.lstrip("+-"))
    return number


def _plain(value: Any, loc: tuple[str | int, ...], problems: list[ScriptProblem]) -> Any:
    """Plain dicts and lists again, reporting duplicate keys and over-long numbers on the way."""
    if isinstance(value, _LongNumber):
        problems.append(
            ScriptProblem(json_path(loc), f"is a number with {value.digits} digits, far larger than any field takes")
        )
        return None
    if isinstance(value, dict):
        for key in getattr(value, "duplicates", []):
            problems.append(
                ScriptProblem(
                    json_path((*loc, key)),
                    f'key "{key}" appears more than once in this object: keep one (only the last would count)',
                )
            )
        return {key: _plain(item, (*loc, key), problems) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item, (*loc, i), problems) for i, item in enumerate(value)]
    return value


# --- pydantic errors -> messages that say what to do -------------------------------------------

_MODELS: dict[tuple[str, ...], type[BaseModel]] = {
    (): StoryScript, ("scenes",): Scene, ("references",): Reference, ("characters",): Character,
}  # fmt: skip

_ADD_KEY = {
    "story_name": 'add "story_name": "..." with the title of the story',
    "scenes": 'add "scenes": [...] with at least one scene',
    "scene_num": 'add "scene_num": N (scenes are numbered in increasing order)',
    "video_prompts": 'add "video_prompts": [...] with one prompt per shot',
    "image": 'add "image": "path/to/image.png" (relative to the script\'s folder)',
    "name": 'add "name": "..." saying what the image shows',
}

_EMPTY = {
    "video_prompts": "write one or two sentences describing the shot (subject, action, setting, camera)",
    "first_frame_prompt": "describe the shot's first frame, or remove the first_frame_prompt list",
    "story_name": "give the story a title",
    "name": "say what the image shows, e.g. the character's name",
}

_TOO_SHORT = {
    "scenes": 'the story has no scenes: add at least one {"scene_num": 1, "video_prompts": [...]}',
    "video_prompts": "the scene has no shots: add at least one prompt, or remove the scene",
}

_OBJECT_SHAPE = {
    (): _FORMAT_HINT,
    ("scenes",): 'each scene is an object: {"scene_num": N, "video_prompts": [...], "cut": [...]}',
    ("references",): 'each reference is an object: {"image": "path.png", "name": "..."}',
    ("characters",): 'each character is an object: {"name": "Mia", "aliases": ["the girl"], "references": ["mia.png"]}',
}

# Where a key means something else for a character than for a reference image.
_CHARACTER_ADVICE = {
    ("missing", "name"): 'add "name": "..." with the character\'s name, as prompts write it',
    ("empty", "name"): "give the character's name, as prompts write it",
    ("empty", "aliases"): "write a name, role or look the prompts use for the character, or remove the empty alias",
    ("empty", "description"): "describe the character, or remove the description",
}


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "number", float: "number", str: "string", list: "list", dict: "object"}.get(
        type(value), "null" if value is None else type(value).__name__
    )
    if isinstance(value, (list, dict)):
        return f"a {kind}" if kind == "list" else "an object"
    shown = json.dumps(value, ensure_ascii=False)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return "null" if value is None else f"the {kind} {shown}"


def _field(loc: tuple[str | int, ...]) -> str:
    """The innermost key of a location: ("scenes", 0, "cut", 2) -> "cut"."""
    keys = [part for part in loc if isinstance(part, str)]
    return keys[-1] if keys else ""


def _keys_of(loc: tuple[str | int, ...]) -> tuple[str, ...]:
    return tuple(part for part in loc if isinstance(part, str))


def _type_problems(err: ValidationError) -> list[ScriptProblem]:
    errors = [e for e in err.errors() if e["type"] != "script_rules"]  # the loader reports those per path
    suggested: set[tuple] = set()
    problems: list[ScriptProblem] = []
    for e in errors:
        if e["type"] == "extra_forbidden":
            message, suggestion = _unknown_key(e["loc"])
            if suggestion:
                suggested.add((*e["loc"][:-1], suggestion))
            problems.append(ScriptProblem(json_path(e["loc"]), message))
    for e in errors:
        if e["type"] == "extra_forbidden" or (e["type"] == "missing" and tuple(e["loc"]) in suggested):
            continue
        problems.append(ScriptProblem(json_path(e["loc"]), _message(e)))
    return problems


def _unknown_key(loc: tuple[str | int, ...]) -> tuple[str, str | None]:
    key = str(loc[-1])
    model = _MODELS.get(_keys_of(loc[:-1]))
    known = list(model.model_fields) if model else []
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f'unknown key "{key}": did you mean "{close[0]}"?', close[0]
    listing = ", ".join(known)
    return f'unknown key "{key}": remove it or rename it (known keys here: {listing})', None


def _message(e: dict) -> str:
    loc, kind, value = tuple(e["loc"]), e["type"], e.get("input")
    field = _field(loc)
    got = _describe(value)
    if loc[:1] == ("characters",):
        advice = _CHARACTER_ADVICE.get(("missing" if kind == "missing" else "empty", field))
        if advice and kind == "missing":
            return f'missing required key "{field}": {advice}'
        if advice and kind == "string_pattern_mismatch":
            return f"is empty: {advice}"
    if kind == "missing":
        return f'missing required key "{field}": ' + _ADD_KEY.get(field, "add it")
    if kind == "model_type":
        shape = _OBJECT_SHAPE.get(_keys_of(loc), "write an object {...}")
        return f"must be an object, got {got}: {shape}"
    if kind == "list_type":
        return f"must be a list [...], got {got}: put one entry per shot (or per item) in square brackets"
    if kind == "too_short":
        return _TOO_SHORT.get(field, f"must not be empty, got {got}")
    if kind == "string_type":
        return f"must be a string, got {got}: write the text in double quotes"
    if kind == "string_pattern_mismatch":
        return "is empty: " + _EMPTY.get(field, "write some text")
    if kind == "bool_type" and field == "cut":
        return (
            f"must be true or false, got {got}: true = hard cut to a new shot, "
            "false = continue from the end of the previous shot"
        )
    if kind in ("int_type", "int_from_float", "int_parsing") and field == "seeds":
        return f"must be a whole number from 0 to {SEED_MAX} or null, got {got}"
    if kind in ("greater_than_equal", "less_than_equal") and field == "seeds":
        return f"must be from 0 to {SEED_MAX} (or null for the run's seed), got {got}"
    if kind in ("int_type", "int_from_float", "int_parsing"):
        return f"must be a whole number, got {got}" + (": number scenes 1, 2, 3, ..." if field == "scene_num" else "")
    if kind in ("path_type", "path_parsing"):
        return f"must be a file path string, got {got}"
    return f"{e['msg']} (got {got})"


# --- reference images -------------------------------------------------------------------------


def _reference_problems(data: Any, base_dir: Path) -> list[ScriptProblem]:
    """The script's reference images and every character's, checked alike (same rules, same limits)."""
    if not isinstance(data, dict):
        return []
    images: list[tuple[str, Any]] = []
    references = data.get("references")
    for i, ref in enumerate(references if isinstance(references, list) else []):
        images.append((f"references[{i}].image", ref.get("image") if isinstance(ref, dict) else None))
    characters = data.get("characters")
    for i, character in enumerate(characters if isinstance(characters, list) else []):
        paths = character.get("references") if isinstance(character, dict) else None
        images += [(f"characters[{i}].references[{j}]", path) for j, path in enumerate(paths if isinstance(paths, list) else [])]
    problems = []
    for where, image in images:
        if not isinstance(image, str):
            continue
        if not image.strip():
            problems.append(ScriptProblem(where, "is empty: give the path of a PNG or JPEG image"))
            continue
        try:
            path = (base_dir / Path(image).expanduser()).resolve()
        except (OSError, RuntimeError, ValueError):  # a NUL byte, a symlink loop
            path = None
        message = _image_problem(path) if path is not None else (
            f"{image!r} is not a readable image file: give the path of a PNG or JPEG image"
        )
        if message:
            problems.append(ScriptProblem(where, message))
    return problems


def _image_problem(path: Path) -> str | None:
    """Why a reference cannot be used, or None. A script may name any path on the machine, so a
    path that is missing, a folder, a device or an unreadable file all get the same answer: the
    message never tells whether something else exists there."""
    import warnings

    from PIL import Image  # PIL only: no torch on the validate path

    # The upper limits add-reference enforces (a 13000x13000 PNG decodes to 5.9 GB).
    from storymem_cli.memory.images import MAX_PIXELS, MAX_SIDE

    not_an_image = (
        f"{path} is not a readable image file (paths are relative to the script's folder): "
        "give the path of a PNG or JPEG image"
    )
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return not_an_image
    except OSError:
        return not_an_image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limits below say it
            with Image.open(path) as image:
                width, height = image.size  # from the header: nothing decoded yet
                if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
                    return (
                        f"{path}: image is {width}x{height}; at most {MAX_SIDE} px a side and {MAX_PIXELS:,} "
                        "pixels: downscale it (the model sees it at video resolution anyway)"
                    )
                image.load()  # decode fully: verify() passes files whose pixel data is cut short
    except Image.DecompressionBombError:
        return f"{path}: image has more than {MAX_PIXELS:,} pixels: downscale it"
    except Exception as err:  # noqa: BLE001  PIL raises assorted errors (OSError, SyntaxError, struct.error)
        if isinstance(err, OSError) and "cannot identify image file" in str(err):
            return not_an_image
        return f"{path} is a corrupt image ({type(err).__name__}: {err}): re-save it as PNG or JPEG"
    return None
