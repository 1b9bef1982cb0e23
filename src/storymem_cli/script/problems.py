"""What the loader reports: one problem per JSON path, and the error that carries them all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from storymem_cli.errors import InvalidInputError


@dataclass(frozen=True)
class ScriptProblem:
    """One error or warning in a script. ``path`` is a JSON path such as ``scenes[1].cut[2]``
    ("" for the file as a whole); ``message`` says what is wrong and what to do."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


def json_path(loc: tuple[str | int, ...]) -> str:
    """``("scenes", 1, "cut", 2)`` -> ``"scenes[1].cut[2]"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_FORMAT_HINT = "`storymem validate --schema` prints the format; README.md explains it with an example"


class ScriptError(InvalidInputError):
    """A story script that cannot be used. Carries every problem found in the file, not just
    the first, so a user fixes them in one round."""

    def __init__(self, path: Path | str, problems: list[ScriptProblem], *, warnings: Sequence[ScriptProblem] = ()):
        self.path = Path(path)
        self.problems = list(problems)
        self.warnings = list(warnings)  # found before the errors stopped the check
        lines = [f"{self.path}: {p}" for p in self.problems]
        count = len(self.problems)
        header = f"{self.path} is not a valid story script ({count} problem{'s' if count != 1 else ''}):"
        super().__init__(
            "\n".join([header, *lines]),
            # Only content problems need the format; a missing or unreadable file does not.
            hint=_FORMAT_HINT if any(p.path for p in self.problems) else None,
        )
