"""Help that fits a terminal, and usage errors in our own words (issue 33)."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from storymem_cli.cli.app import app

runner = CliRunner()


@pytest.mark.parametrize("command", ["train", "render", "export", "eval"])
def test_every_option_name_is_shown_whole_at_80_columns(command):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    params = typer.main.get_command(app).commands[command].params
    names = [opt for param in params for opt in param.opts if opt.startswith("--")]
    # The first cell of a row: an option name, whole (a cut one ends in "…" and matches no name).
    shown = set(re.findall(r"^│\s+(?:\*\s+)?(--[a-z0-9-]+)(?=\s)", result.stdout, re.MULTILINE))
    assert [name for name in names if name not in shown] == [], result.stdout


def test_train_help_lists_the_choices():
    out = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "120"}).stdout
    assert re.search(r"--stage\s+transformer\|vae\s", out)
    assert re.search(r"--experts\s+both\|high\|low\s", out)
    assert re.search(r"--rope\s+negative\|sequential\s", out)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "data", "-o", "out", "--steps", "0"], "No such option: --steps"),
        (["train", "data", "-o", "out", "--stage", "vea"], "'vea' is not one of"),
        (["render", "story.json", "--steps", "0"], "--steps"),
        (["rendr", "story.json"], "No such command 'rendr'"),
    ],
)
def test_usage_errors_are_error_and_hint_lines(argv, message):
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert lines[1].startswith("  hint: storymem") and "--help" in lines[1]
    assert "╭" not in result.stderr and "Usage:" not in result.stderr  # not Typer's box
