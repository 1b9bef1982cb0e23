"""Help that reads like documentation.

Typer 0.29 prints a raw type beside every parameter (``<bool>``, ``<list[Path]>``,
``<int range> [x>=1]``). Here flags get no value hint, values a metavar that says
what to type (``N``, ``PATH``, the choices), and ranges are written in words.
Applied to each command's parameters as the app resolves it (``cli/app.py``).
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperOption

_BY_TYPE = {int: "N", float: "NUMBER", str: "TEXT"}  # what to type for a value of this type


def _metavar(param: TyperArgument | TyperOption) -> str:
    desc = param.type_descriptor
    if desc.is_choice:
        return "|".join(str(getattr(choice, "value", choice)) for choice in desc.choices or ())
    if desc.is_path:
        return "PATH"
    annotation = desc.annotation
    inner = getattr(annotation, "__args__", (annotation,))[0] if desc.is_list else annotation
    if getattr(inner, "__name__", "") == "Path":
        return "PATH"
    return _BY_TYPE.get(inner, "VALUE")


def _range_in_words(low: float | None, high: float | None) -> str | None:
    if low is None and high is None:
        return None
    if high is None:
        return f"{low} or more"
    if low is None:
        return f"at most {high}"
    return f"{low} to {high}"


class DocumentedOption(TyperOption):
    def display_type_rich(self, ctx: Any) -> str | None:
        if self.is_flag:
            return None
        return self.metavar if self.metavar is not None else _metavar(self)

    def _get_number_range_help_str(self) -> str | None:
        return None if self.count else _range_in_words(self.min, self.max)


class DocumentedArgument(TyperArgument):
    def display_type_rich(self, ctx: Any) -> str | None:
        return None  # the argument's name (its metavar) already says what it is

    def _rich_display_name(self) -> str:
        return self.display_name_raw + ("..." if self.nargs != 1 else "")

    def _usage_display_name(self) -> str:
        # SCRIPT... / [RUN_DIR]... as in most CLIs, not Typer's {SCRIPT}... for a required one
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")

    def _get_number_range_help_str(self) -> str | None:
        return _range_in_words(self.min, self.max)


# Older Typer releases (pyproject allows them) have neither the type column nor these methods:
# their help is left as it is.
TYPE_COLUMN = hasattr(TyperOption, "display_type_rich") and hasattr(TyperArgument, "_usage_display_name")


def document_params(params: list[Any]) -> None:
    """Switch Typer's parameters to the documented display; idempotent."""
    if not TYPE_COLUMN:
        return
    for param in params:
        if type(param) is TyperOption:
            param.__class__ = DocumentedOption  # same fields, only the help display differs
        elif type(param) is TyperArgument:
            param.__class__ = DocumentedArgument
            if param.metavar is None:
                param.metavar = param.name.upper()
