"""Captions of toy clips from a small, unambiguous grammar, and their parser.

    caption   := subject " " action " " setting
    subject   := article " " colour " " shape [accessory]        (full form: names the look)
               | "the hero" | "the friend"                        (role form: names no look)
    article   := "a" | "an"                                       ("an" before a vowel)
    accessory := " with a hat" | " with a bow" | " with glasses"   (none: nothing)
    action    := world.ACTIONS values        e.g. "hops to the left"
    setting   := world.SETTINGS[*].phrase    e.g. "on the beach"

Example: "a red circle with a hat hops to the left on the beach", and in role
form "the hero hops to the left on the beach". Captions are lower case words
separated by single spaces, with no punctuation: the toy text encoder's
tokenizer is one token per word of :func:`vocab`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from storymem_cli.toy.world import (
    ACCESSORIES,
    ACTIONS,
    COLOURS,
    SETTINGS,
    SHAPES,
    Character,
    Shot,
)

ROLES: tuple[str, ...] = ("hero", "friend")  # "the hero": first character of a story, "the friend": second

_ACCESSORY_PHRASES = {"none": "", "hat": " with a hat", "bow": " with a bow", "glasses": " with glasses"}
assert set(_ACCESSORY_PHRASES) == set(ACCESSORIES)


def describe(character: Character) -> str:
    """The look of a character as a noun phrase: "an orange square with glasses"."""
    article = "an" if character.colour[0] in "aeiou" else "a"
    return f"{article} {character.colour} {character.shape}{_ACCESSORY_PHRASES[character.accessory]}"


def caption(shot: Shot, role: str | None = None) -> str:
    """Full caption of ``shot``, or its role form ("the hero ...") when ``role`` is given."""
    if role is not None and role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {ROLES}")
    subject = f"the {role}" if role else describe(shot.character)
    return f"{subject} {ACTIONS[shot.action]} {SETTINGS[shot.setting].phrase}"


@dataclass(frozen=True)
class ParsedCaption:
    """What a caption says. Exactly one of ``character`` and ``role`` is set."""

    character: Character | None
    role: str | None
    action: str
    setting: str


def _alternation(words) -> str:
    # Longest first so that no alternative can stop at a prefix of a longer one.
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


@lru_cache(maxsize=1)
def _pattern() -> re.Pattern[str]:
    accessory = _alternation(p for p in _ACCESSORY_PHRASES.values() if p)
    return re.compile(
        rf"(?:(?:a|an) (?P<colour>{_alternation(COLOURS)}) (?P<shape>{_alternation(SHAPES)})"
        rf"(?P<accessory>{accessory})?|the (?P<role>{_alternation(ROLES)}))"
        rf" (?P<action>{_alternation(ACTIONS.values())})"
        rf" (?P<setting>{_alternation(s.phrase for s in SETTINGS.values())})"
    )


def normalise(text: str) -> str:
    """Lower case, single spaces, no trailing full stop: the form the grammar produces."""
    return " ".join(text.lower().strip().rstrip(".").split())


def parse_caption(text: str) -> ParsedCaption:
    """Recover (character or role, action, setting) from a caption; ValueError if it is not one."""
    norm = normalise(text)
    m = _pattern().fullmatch(norm)
    if m is None:
        raise ValueError(f"not a toy-world caption: {text!r}")
    action = next(k for k, v in ACTIONS.items() if v == m["action"])
    setting = next(k for k, s in SETTINGS.items() if s.phrase == m["setting"])
    if m["role"]:
        return ParsedCaption(None, m["role"], action, setting)
    accessory = next(k for k, v in _ACCESSORY_PHRASES.items() if v == (m["accessory"] or ""))
    character = Character(m["shape"], m["colour"], accessory)
    if not norm.startswith(describe(character)):  # "a orange ..." / "an red ...": wrong article
        raise ValueError(f"not a toy-world caption (article): {text!r}")
    return ParsedCaption(character, None, action, setting)


def vocab() -> list[str]:
    """Every word a caption can contain, sorted: the toy tokenizer's vocabulary."""
    phrases = ["a an the", *COLOURS, *SHAPES, *_ACCESSORY_PHRASES.values(), *ROLES, *ACTIONS.values()]
    phrases += [s.phrase for s in SETTINGS.values()]
    return sorted({w for p in phrases for w in p.split()})
