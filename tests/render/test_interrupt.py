"""Ctrl-C during a render: it says what was kept and the exact command that resumes."""

from __future__ import annotations

import json
import shlex

from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.render.story import StoryRenderer

from .conftest import small_story, write_script


def test_ctrl_c_says_what_was_kept_and_how_to_resume(tmp_path, generate_log, monkeypatch):
    script = write_script(tmp_path, "boat.json", small_story("Boat", shots=3))
    run = tmp_path / "run"
    args = ["render", str(script), "-o", str(run), "--model", "tiny", "--device", "cpu", "--frames", "5", "--restart"]
    real = StoryRenderer._render_shot

    def ctrl_c_in_shot_2(self, plan, *rest):
        if plan.index == 1:
            raise KeyboardInterrupt
        return real(self, plan, *rest)

    monkeypatch.setattr(StoryRenderer, "_render_shot", ctrl_c_in_shot_2)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 130
    assert f"interrupted: Boat: 1 of 3 shots finished and kept in {run}" in result.stderr
    resume = next(line for line in result.stderr.splitlines() if "resume with:" in line).split("resume with: ")[1]
    # The same command, without --restart: it would throw the kept shot away.
    assert shlex.split(resume) == ["storymem", *args[:-1]]

    monkeypatch.setattr(StoryRenderer, "_render_shot", real)
    generate_log.clear()
    again = CliRunner().invoke(app, [*shlex.split(resume)[1:], "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["kept_shots"] == 1 and len(generate_log) == 2
