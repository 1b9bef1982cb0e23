"""``--style-lora`` and ``--flow-shift`` as the user types them, parsed and checked before anything loads.

No torch: the render's preflight reads each style LoRA's safetensors header (layout recognised, nothing
that is really a StoryMem LoRA) in well under a second, instead of failing after the model has loaded.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from storymem_cli.errors import InvalidInputError
from storymem_cli.render.settings import MAX_FLOW_SHIFT, StyleLora

STYLE_LORA_METAVAR = "[PAIR:EXPERT=]PATH[:STRENGTH]"
_TARGETS = "high=, low= (one expert), t2v=, m2v= (one pair), or both, e.g. t2v:high= or m2v:low="
_TARGET = re.compile(r"^(?:(?P<pair>t2v|m2v)(?::(?P<expert>high|low))?|(?P<only>high|low))$")
_LOOKS_LIKE_TARGET = re.compile(r"^[\w:]+$")  # a word before '=' (a path would have / or .)
_SUFFIXES = (".safetensors", ".pth")


def parse_style_lora(text: str) -> StyleLora:
    """``[PAIR:EXPERT=]PATH[:STRENGTH]``: the pair (t2v / m2v; both when not named), the expert (high /
    low; both when not named), the path and the strength (1 when not given). A file that exists under
    the whole text is taken as it is."""
    where = f"--style-lora {text}"
    if Path(text).exists():
        return StyleLora(path=text)
    pair, expert, rest = "both", "both", text
    target, sep, after = text.partition("=")
    if sep and _LOOKS_LIKE_TARGET.match(target):
        match = _TARGET.match(target)
        if match is None:
            raise InvalidInputError(f"{where}: {target!r} before '=' is not a pair or expert", hint=f"use {_TARGETS}")
        pair = match.group("pair") or "both"
        expert = match.group("expert") or match.group("only") or "both"
        rest = after
    path, sep, strength_text = rest.rpartition(":")
    # a colon after the file name starts the strength; any other colon belongs to the path (C:/x)
    if not sep or Path(rest).exists() or not (path.lower().endswith(_SUFFIXES) or _is_number(strength_text)):
        return StyleLora(path=rest, expert=expert, pair=pair)  # type: ignore[arg-type]
    try:
        strength = float(strength_text)
    except ValueError:
        raise InvalidInputError(
            f"{where}: the strength after ':' must be a number, got {strength_text!r}",
            hint=f"e.g. --style-lora {path}:0.8 (no such file as {rest!r} either)",
        ) from None
    if not math.isfinite(strength):
        raise InvalidInputError(f"{where}: the strength must be a finite number, got {strength_text!r}")
    return StyleLora(path=path, strength=strength, expert=expert, pair=pair)  # type: ignore[arg-type]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_flow_shifts(values: list[str]) -> tuple[float | None, float | None]:
    """``--flow-shift [t2v=|m2v=]SHIFT`` (repeatable) -> (T2V pair's shift, M2V pair's shift); a bare
    number sets both, a later value wins."""
    shifts: dict[str, float | None] = {"t2v": None, "m2v": None}
    for text in values:
        pair, sep, number = text.partition("=")
        if not sep:
            pair, number = "both", text
        elif pair not in shifts:
            raise InvalidInputError(
                f"--flow-shift {text}: {pair!r} before '=' is not a pair", hint="use t2v=SHIFT, m2v=SHIFT or SHIFT (both)"
            )
        try:
            value = float(number)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and 0 < value <= MAX_FLOW_SHIFT):
            raise InvalidInputError(
                f"--flow-shift {text}: the shift must be a number above 0 and at most {MAX_FLOW_SHIFT:g}",
                hint="the paper: 12 for the first shot (t2v), 4 for the others (m2v); Lightning: 5",
            )
        for name in shifts if pair == "both" else [pair]:
            shifts[name] = value
    return shifts["t2v"], shifts["m2v"]


def check_style_lora_file(style: StyleLora) -> None:
    """The file exists, is a readable LoRA file, and (``.safetensors``) its header is in a layout
    storymem loads; :class:`InvalidInputError` naming the file and the reason otherwise."""
    from storymem_cli.models.lora_layout import classify, read_header

    path = Path(style.path).expanduser()
    where = f"--style-lora {style.path}"
    if not path.exists():
        raise InvalidInputError(f"{where}: no such file", hint="check the path")
    if path.is_dir():
        raise InvalidInputError(f"{where}: is a folder, not a LoRA file", hint="give the .safetensors file inside it")
    if path.suffix.lower() not in _SUFFIXES:
        raise InvalidInputError(f"{where}: not a LoRA file (.safetensors or .pth)", hint="give a .safetensors file")
    if not os.access(path, os.R_OK):
        raise InvalidInputError(f"{where}: cannot be read (permissions)", hint="check the file's permissions")
    if path.suffix.lower() == ".safetensors":  # a .pth needs torch to open: checked when the model loads
        shapes, _ = read_header(path)
        classify(path, shapes)
