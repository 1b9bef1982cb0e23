"""Command-line options read from the pydantic fields they fill, so that choices, defaults and bounds
are written once, on the field (``models/runtime.py``, ``render/settings.py``).

Typer needs an Enum for a choice and knows nothing of pydantic's bounds; these helpers make both
from the field. Typer's own ``min``/``max`` are not used for them: they let nan through, and their
message would differ from the one every other range error here gives.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any, Literal, TypeVar, get_args, get_origin

import annotated_types
import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from storymem_cli.errors import InvalidInputError

_Model = TypeVar("_Model", bound=BaseModel)


def choices(name: str, model: type[BaseModel], field: str) -> type[Enum]:
    """A Typer choice type whose values are those of the field's ``Literal`` (``None`` left out)."""
    annotation = model.model_fields[field].annotation
    literal = next(arg for arg in (annotation, *get_args(annotation)) if get_origin(arg) is Literal)
    return Enum(name, [(value, value) for value in get_args(literal)], type=str)  # type: ignore[return-value]


def field_option(model: type[BaseModel], field: str, *param_decls: str, choice: Any = None, **kwargs: Any) -> Any:
    """``typer.Option`` with the field's default (a member of ``choice``, an Enum from :func:`choices`,
    when given)."""
    default = model.model_fields[field].default
    return typer.Option(default if choice is None else choice(default), *param_decls, **kwargs)


def from_params(model: type[_Model], ctx: typer.Context) -> _Model:
    """``model`` filled from the command's parameters named as its fields (the others keep their
    defaults); each bounded number is checked first, so a bad one is refused naming its flag."""
    flags = {param.name: param.opts[0] for param in ctx.command.params}
    given = {name: ctx.params[name] for name in model.model_fields if name in ctx.params}
    for name, value in given.items():
        check_field(flags[name], value, model.model_fields[name])
    return model(**given)


def _bounds(field: FieldInfo) -> tuple[float, bool, float, bool] | None:
    """(low, low is excluded, high, high is excluded) from the field's ge/gt/le/lt constraints; None for
    a field without."""
    low, open_low, high, open_high, found = -math.inf, False, math.inf, False, False
    for rule in field.metadata:
        if isinstance(rule, annotated_types.Ge):
            low, found = rule.ge, True
        elif isinstance(rule, annotated_types.Gt):
            low, open_low, found = rule.gt, True, True
        elif isinstance(rule, annotated_types.Le):
            high, found = rule.le, True
        elif isinstance(rule, annotated_types.Lt):
            high, open_high, found = rule.lt, True, True
    return (low, open_low, high, open_high) if found else None  # type: ignore[return-value]


def check_field(option: str, value: Any, field: FieldInfo) -> None:
    """A finite number within the field's bounds, else refused naming ``option`` and saying why with
    the field's description (typer's ranges let nan through). Fields without bounds pass."""
    bounds = _bounds(field)
    if value is None or bounds is None:
        return
    low, open_low, high, open_high = bounds
    above = low < value if open_low else low <= value
    below = value < high if open_high else value <= high
    if math.isfinite(value) and above and below:
        return
    if open_high:
        allowed = f"{'above' if open_low else 'at least'} {low:g} and below {high:g}"
    else:
        allowed = f"above {low:g} and at most {high:g}" if open_low else f"from {low:g} to {high:g}"
    reason = f" ({field.description})" if field.description else ""
    raise InvalidInputError(f"{option} {value}: must be a number {allowed}{reason}")
