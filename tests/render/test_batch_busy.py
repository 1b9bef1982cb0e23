"""Two unsharded batches over the same scripts: a story the other process is rendering is its
work, not a failure (issue 22)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.render.runfolder import RunFolder

from .conftest import small_story, write_script


def test_a_story_another_process_renders_is_skipped_not_failed(tmp_path, generate_log):
    a = write_script(tmp_path / "scripts", "a.json", small_story("A", shots=1))
    b = write_script(tmp_path / "scripts", "b.json", small_story("B", shots=1))
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    with RunFolder(out / "a").locked():  # the other process, in the middle of story a
        result = CliRunner().invoke(app, ["render", str(a), str(b), "-o", str(out), "--model", "tiny", "--json",
                                          "--steps", "1", "--frames", "5"])  # which story is skipped, not pixels
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [story["story"] for story in summary["stories"]] == ["B"]
    assert summary["failed"] == []
    assert [story["script"] for story in summary["skipped"]] == [str(a)]
    assert "skipped" in result.stderr and "another storymem process" in result.stderr
    assert len(generate_log) == 1  # b only; a is left to the process that holds it


def test_a_single_busy_story_is_still_an_error(tmp_path):
    a = write_script(tmp_path, "a.json", small_story("A", shots=1))
    (tmp_path / "run").mkdir()
    with RunFolder(tmp_path / "run").locked():
        result = CliRunner().invoke(app, ["render", str(a), "-o", str(tmp_path / "run"), "--model", "tiny"])
    assert result.exit_code == 4 and "another storymem process" in result.stderr
