"""`--keyframes release` scans each shot's untrimmed output; the default scans the shot's own frames."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.render import story

from .conftest import small_story, write_script


@pytest.mark.parametrize("keyframes", ["semantic", "release"])
def test_which_frames_keyframe_selection_scans(tmp_path, generate_log, monkeypatch, keyframes):
    scanned = []
    real_update_bank = story.update_bank

    def update_bank(bank, shot, frames, parts, memory_ids, **kwargs):
        scanned.append(frames.copy())
        return real_update_bank(bank, shot, frames, parts, memory_ids, **kwargs)

    monkeypatch.setattr(story, "update_bank", update_bank)
    script = write_script(tmp_path, "boat.json", small_story("Boat", shots=2))  # a cut, then MM2V
    args = ["render", str(script), "-o", str(tmp_path / "run"), "--model", "tiny", "--continuation", "mm2v"]
    result = CliRunner().invoke(app, [*args, "--keyframes", keyframes, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["settings"]["memory"]["selection"] == keyframes

    (_, cut_frames), (request, continued) = generate_log
    assert request.mode == "mm2v"
    copies = 5 if keyframes == "semantic" else 0  # the default drops the 5 copies of shot 1's end
    assert scanned[0].tobytes() == cut_frames.tobytes()
    assert scanned[1].tobytes() == continued[copies:].tobytes()
