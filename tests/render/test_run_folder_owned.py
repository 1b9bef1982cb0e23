"""The run folder's contract with the user's files: a render and --restart touch only what storymem
wrote (issue 22, items 1 and 2), and add-reference respects a running render's lock (item 3)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.render.runfolder import RunFolder

from .conftest import small_story, write_script

USER_FILES = {
    "report.tmp-final.txt": "the user's report",
    "notes.tmp-1.txt": "the user's notes",
    "shots/my-cut.tmp-2.mp4": "the user's edit",
    "shots/storyboard.txt": "the user's storyboard",
    "memory/hero-sketch.png": "the user's sketch",
    "memory/.hero.png.1.tmp": "the user's hidden file",
}


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "hero.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(path)
    return path


def _render(script, run, *extra):
    # One step, 5 frames: these tests are about which files a render touches, not about its pixels.
    return CliRunner().invoke(app, ["render", str(script), "-o", str(run), "--model", "tiny", "--json",
                                    "--steps", "1", "--frames", "5", *extra])  # fmt: skip


def _put_user_files(run):
    for name, text in USER_FILES.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(text)


def _assert_user_files(run):
    for name, text in USER_FILES.items():
        assert (run / name).read_text() == text, name


def test_render_keeps_the_users_files_with_tmp_in_their_names(tmp_path, generate_log):
    script = write_script(tmp_path, "boat.json", small_story("Boat", shots=2))
    run = tmp_path / "run"
    first = _render(script, run)
    assert first.exit_code == 0, first.output
    _put_user_files(run)
    # A stale temp of our own is still swept.
    (run / "shots" / "shot_002.tmp-99999.mp4").write_bytes(b"half a clip")
    again = _render(script, run)
    assert again.exit_code == 0, again.output
    _assert_user_files(run)
    assert not (run / "shots" / "shot_002.tmp-99999.mp4").exists()


def test_restart_removes_only_what_storymem_wrote(tmp_path, generate_log):
    script = write_script(tmp_path, "boat.json", small_story("Boat", shots=2))
    run = tmp_path / "run"
    assert _render(script, run).exit_code == 0
    pngs = sorted(p.name for p in (run / "memory").glob("s*.png"))
    assert pngs
    _put_user_files(run)
    (run / "shots" / "shot_009.mp4").write_bytes(b"an old clip of ours")
    generate_log.clear()
    again = _render(script, run, "--restart")
    assert again.exit_code == 0, again.output
    assert len(generate_log) == 2  # every shot rendered again
    _assert_user_files(run)
    assert not (run / "shots" / "shot_009.mp4").exists()
    assert json.loads((run / "run.json").read_text())["kept_shots"] == 0


def test_add_reference_refuses_while_a_render_holds_the_folder(tmp_path, image_file):
    run = tmp_path / "run"
    run.mkdir()
    runner = CliRunner()
    with RunFolder(run).locked():
        held = runner.invoke(app, ["add-reference", str(run), str(image_file)])
    assert held.exit_code == 4, held.output  # busy
    assert "another storymem" in held.output and str(run) in held.output
    assert not (run / "memory.json").exists()
    free = runner.invoke(app, ["add-reference", str(run), str(image_file)])
    assert free.exit_code == 0, free.output
    with RunFolder(run).locked():
        removing = runner.invoke(app, ["add-reference", str(run), "--remove", "anything"])
    assert removing.exit_code == 4 and "another storymem" in removing.output
