"""Who a prompt names: the script's characters matched by name and alias, and the rules on them.

A character is named by a prompt when one of its terms (its name or an alias) appears in it as
whole words, in any case: "Mia" names Mia in "mia waves" but not in "Miami". Whitespace inside a
term matches any run of whitespace. Pure functions over plain data: the loader runs the rules
on the raw JSON (with JSON paths), the renderer matches prompts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from storymem_cli.script.problems import ScriptProblem

# An alias says who someone is (a name, a role, a look); a pronoun names whoever was last
# mentioned, so it would tag shots with the wrong character.
PRONOUNS = frozenset(
    "i me my mine myself you your yours yourself yourselves he him his himself she her hers herself it its "
    "itself we us our ours ourselves they them their theirs themselves one someone somebody everyone "
    "everybody anyone anybody nobody this that these those who whom".split()
)


def _words(term: str) -> list[str]:
    return term.casefold().split()


def term_pattern(term: str) -> re.Pattern[str]:
    """Whole words, any case, any whitespace between the words of a multi-word term."""
    body = r"\s+".join(re.escape(word) for word in term.split())
    return re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE)


def character_terms(character: Any) -> list[str]:
    """The name and aliases of a character (a model or a dict)."""
    get = character.get if isinstance(character, dict) else lambda key, default=None: getattr(character, key, default)
    return [get("name"), *(get("aliases") or [])]


def named_characters(prompt: str, characters: Sequence[Any]) -> list[str]:
    """Names of the characters ``prompt`` names, in the order they are declared."""
    return [
        terms[0]
        for terms in (character_terms(c) for c in characters)
        if any(term_pattern(term).search(prompt) for term in terms)
    ]


def _contains(outer: str, inner: str) -> bool:
    """``inner``'s words appear, in order and adjacent, among ``outer``'s (both case-folded)."""
    a, b = _words(outer), _words(inner)
    return bool(b) and any(a[i : i + len(b)] == b for i in range(len(a) - len(b) + 1))


def _terms_with_paths(characters: list[tuple[int, dict]]) -> Iterable[tuple[int, str, str]]:
    for i, character in characters:
        name = character.get("name")
        if isinstance(name, str) and name.strip():
            yield i, f"characters[{i}].name", name
        aliases = character.get("aliases")
        for j, alias in enumerate(aliases if isinstance(aliases, list) else []):
            if isinstance(alias, str) and alias.strip():
                yield i, f"characters[{i}].aliases[{j}]", alias


def character_problems(data: Any) -> list[ScriptProblem]:
    """Pronouns used as names, the same term twice, and terms of two characters that overlap
    (a prompt naming one would name the other too)."""
    raw = data.get("characters") if isinstance(data, dict) else None
    characters = [(i, c) for i, c in enumerate(raw if isinstance(raw, list) else []) if isinstance(c, dict)]
    problems: list[ScriptProblem] = []
    seen: dict[str, str] = {}  # case-folded term -> where it was first given
    terms = list(_terms_with_paths(characters))
    for owner, path, term in terms:
        key = " ".join(_words(term))
        if key in PRONOUNS:
            problems.append(
                ScriptProblem(
                    path,
                    f'"{term}" is a pronoun: it names whoever was mentioned last, so it cannot tell who is in a '
                    "shot; use a name, a role or a look (e.g. \"the girl\", \"red coat\")",
                )
            )
        elif key in seen:
            problems.append(
                ScriptProblem(path, f'"{term}" is given twice (also {seen[key]}): each name and alias names one character')
            )
        seen.setdefault(key, path)
    for owner, path, term in terms:
        for other_owner, other_path, other in terms:
            if owner == other_owner or " ".join(_words(term)) == " ".join(_words(other)):
                continue
            if _contains(term, other):
                problems.append(
                    ScriptProblem(
                        path,
                        f'"{term}" contains "{other}" ({other_path}), a name of another character: a prompt saying '
                        f'"{term}" would name both; make the two distinct',
                    )
                )
    return problems


def character_warnings(data: Any, prompts: Sequence[str]) -> list[ScriptProblem]:
    """A character no prompt names is never retrieved by name: probably a typo in its names."""
    raw = data.get("characters") if isinstance(data, dict) else None
    warnings = []
    for i, character in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(character, dict) or not isinstance(character.get("name"), str):
            continue
        terms = [t for t in character_terms(character) if isinstance(t, str) and t.strip()]
        if terms and not any(term_pattern(t).search(p) for t in terms for p in prompts if isinstance(p, str)):
            warnings.append(
                ScriptProblem(
                    f"characters[{i}]",
                    f'no prompt names "{character["name"]}" or its aliases: its memory is never retrieved by name; '
                    "check the spelling, or add the words the prompts use to its aliases",
                )
            )
    return warnings
