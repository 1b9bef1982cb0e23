"""CLI options read from the pydantic fields they fill (cli/fields.py): choices, defaults, bounds."""

from __future__ import annotations

from typing import get_args

import pytest

from storymem_cli.cli.fields import check_field, choices
from storymem_cli.errors import InvalidInputError
from storymem_cli.models.runtime import CacheMode, RuntimeOptions
from storymem_cli.render.settings import RenderOptions


def test_choices_are_the_fields_literal_values_without_none():
    assert [c.value for c in choices("Cache", RuntimeOptions, "cache")] == list(get_args(CacheMode))
    assert [c.value for c in choices("K", RenderOptions, "keyframes")] == ["semantic", "release", "first-frame"]


@pytest.mark.parametrize(
    ("option", "model", "field", "value", "message"),
    [
        ("--guidance", RenderOptions, "guidance", 0.5,
         "--guidance 0.5: must be a number from 1 to 30 (1 turns guidance off; the paper uses 3.5)"),
        ("--guidance", RenderOptions, "guidance", float("nan"), "--guidance nan: must be a number from 1 to 30"),
        ("--cache-interval", RuntimeOptions, "cache_interval", 41,
         "--cache-interval 41: must be a number from 2 to 40 (steps between full computations)"),
        ("--cache-threshold", RuntimeOptions, "cache_threshold", 0.0,
         "--cache-threshold 0.0: must be a number above 0 and at most 1 (the first-block cache's"),
    ],
)  # fmt: skip
def test_a_number_outside_the_fields_bounds_is_refused_naming_the_flag(option, model, field, value, message):
    with pytest.raises(InvalidInputError) as refused:
        check_field(option, value, model.model_fields[field])
    assert refused.value.message.startswith(message)


def test_numbers_inside_the_bounds_and_fields_without_bounds_pass():
    fields = RuntimeOptions.model_fields
    for name, value in [("cache_threshold", 1e-7), ("cache_threshold", 1.0), ("cache_interval", 2), ("device", "cpu"),
                        ("compile", True), ("cache_threshold", None)]:  # fmt: skip
        check_field("--x", value, fields[name])
