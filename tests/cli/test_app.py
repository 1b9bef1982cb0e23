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


COMMANDS = ["validate", "render", "inspect-memory", "add-reference", "eval", "train", "download", "doctor"]
RAW_TYPE = re.compile(r"<(bool|str|int|float|path|file|directory|list\[[^\]]*\]|int range|float range)>|\[x[<>]=|<=x")


def test_help_has_no_raw_type_hints():
    for command in [[], *([name] for name in COMMANDS)]:
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, command
        assert not RAW_TYPE.search(result.stdout), (command, RAW_TYPE.search(result.stdout))


def test_help_writes_values_flags_and_ranges_as_documentation():
    out = runner.invoke(app, ["render", "--help"], env={"COLUMNS": "200"}).stdout
    assert "Usage: storymem render [OPTIONS] SCRIPT..." in out
    assert re.search(r"--size\s+WxH\s", out)
    assert re.search(r"--upscale\s+N \[1 to 16\]\s", out)
    assert re.search(r"--rope\s+negative\|sequential\s", out)
    assert re.search(r"--dry-run\s+Print the plan", out)  # a flag: no value hint
    assert "runs/ and the script's file name" in out  # no <...> for the markdown formatter to swallow
