"""The app shell: version, help, the error handler's exit codes."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from storymem_cli import __version__
from storymem_cli.cli.app import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"storymem {__version__}"


def test_help_explains_exit_codes():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "Exit codes: 0 success, 1 unexpected failure, 2 invalid input" in " ".join(result.stdout.split())


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = readme.splitlines()
    marker = lines.index("<!-- test-command -->")
    assert lines[marker + 1].startswith("```")
    command = lines[marker + 2]
    assert re.search(r"\bpytest\b", command)
    assert "README.md" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_render_help_names_the_model_auto_picks_here():
    from storymem_cli.models.registry import resolve_preset

    result = runner.invoke(app, ["render", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    said = re.search(r"auto \((\S+) on a CUDA machine, else the built-in CPU model '(\S+)'\)", result.stdout)
    assert said is not None, result.stdout
    assert resolve_preset("auto").name in said.groups()  # this machine's choice is one of the two named
