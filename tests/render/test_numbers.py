"""Numbers without meaning are refused before anything renders (issue 22, item 7)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.config import RopeConfig

from .conftest import small_story, write_script


@pytest.mark.parametrize(
    ("flags", "culprit"),
    [
        (["--rope-shift", "nan"], "--rope-shift"),
        (["--rope-shift", "-inf"], "--rope-shift"),
        (["--rope-shift", "0"], "--rope-shift"),
        (["--memory-size", "1", "--sink-size", "5"], "--sink-size 5"),
        (["--seed", str(2**32)], "--seed"),  # would wrap around to seed 0
        (["--seed", str(2**40 + 3)], "--seed"),
    ],
)
def test_meaningless_numbers_are_refused(tmp_path, flags, culprit):
    script = write_script(tmp_path, "boat.json", small_story("Boat"))
    result = CliRunner().invoke(app, ["render", str(script), "--model", "tiny", "--dry-run", "-o", str(tmp_path / "r"), *flags])
    assert result.exit_code == 2, result.output
    assert culprit in result.output


def test_rope_config_refuses_non_finite_and_non_positive_shifts():
    for shift in (float("nan"), float("inf"), 0.0, -5.0):
        with pytest.raises(ValidationError):
            RopeConfig(shift=shift)
    assert RopeConfig(shift=5).shift == 5


def test_largest_seed_and_equal_sink_and_memory_are_accepted(tmp_path):
    script = write_script(tmp_path, "boat.json", small_story("Boat"))
    args = ["render", str(script), "--model", "tiny", "--dry-run", "-o", str(tmp_path / "r"), "--seed", str(2**32 - 1)]
    result = CliRunner().invoke(app, [*args, "--memory-size", "3", "--sink-size", "3"])
    assert result.exit_code == 0, result.output
