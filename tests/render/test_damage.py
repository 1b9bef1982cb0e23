"""Damaged run folders are repaired exactly or refused, never used as they are (issue 22, items 4-6).

Each test damages a copy of one finished render, marks it unfinished (as a killed run leaves
it) where that matters, renders again and compares with the undamaged render.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.render.video import read_frames

from .conftest import small_story, write_script

runner = CliRunner()


def _render(script: Path, run: Path):
    return runner.invoke(app, ["render", str(script), "-o", str(run), "--model", "tiny", "--json"])


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    root = tmp_path_factory.mktemp("damage")
    script = write_script(root, "boat.json", small_story("Boat", shots=3))
    result = _render(script, root / "run")
    assert result.exit_code == 0, result.output
    return {"script": script, "run": root / "run"}


def _copy(original, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(original["run"], run)
    return run


def _record(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def _interrupt_after(run: Path, shots: int) -> None:
    """Make the folder look like a render killed after ``shots`` finished shots."""
    record = _record(run)
    record["shots"] = record["shots"][:shots]
    record["status"] = "rendering"
    (run / "run.json").write_text(json.dumps(record))


def _tails(run: Path) -> list[bytes]:
    tails = []
    for shot in _record(run)["shots"]:
        with np.load(run / shot["tail"]) as data:
            tails.append(data["frames"].tobytes())
    return tails


def _assert_same_as(original_run: Path, run: Path) -> None:
    ours, theirs = _record(run), _record(original_run)
    assert [s["memory_ids"] for s in ours["shots"]] == [s["memory_ids"] for s in theirs["shots"]]
    assert [s["keyframe_ids"] for s in ours["shots"]] == [s["keyframe_ids"] for s in theirs["shots"]]
    assert _tails(run) == _tails(original_run)
    assert np.array_equal(read_frames(run / "story.mp4"), read_frames(original_run / "story.mp4"))


def test_deleted_memory_json_is_rebuilt_not_resumed_empty(original, tmp_path, generate_log):
    first_ids = _record(original["run"])["shots"][1]["memory_ids"]
    assert first_ids  # shot 2 read memory: the bank of a resumed run cannot be empty
    run = _copy(original, tmp_path)
    _interrupt_after(run, 2)
    (run / "memory.json").unlink()
    result = _render(original["script"], run)
    assert result.exit_code == 0, result.output
    assert "shot 1 cannot be kept" in result.stderr and "memory.json is missing" in result.stderr
    assert len(generate_log) == 3  # from shot 1, whose keyframes were lost
    _assert_same_as(original["run"], run)


def test_truncated_clip_is_rendered_again_and_the_story_is_whole(original, tmp_path, generate_log):
    run = _copy(original, tmp_path)
    _interrupt_after(run, 2)
    clip = run / "shots" / "shot_002.mp4"
    clip.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    result = _render(original["script"], run)
    assert result.exit_code == 0, result.output
    assert "shot 2 cannot be kept" in result.stderr
    assert len(generate_log) == 2
    total = _record(original["run"])["total_frames"]
    assert len(read_frames(run / "story.mp4")) == total == _record(run)["total_frames"]
    _assert_same_as(original["run"], run)


def test_damaged_story_mp4_of_a_finished_run_is_joined_again(original, tmp_path, generate_log):
    run = _copy(original, tmp_path)
    video = run / "story.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    result = _render(original["script"], run)
    assert result.exit_code == 0, result.output
    assert generate_log == []  # every shot is intact: only the join is redone
    _assert_same_as(original["run"], run)


def test_replaced_keyframe_png_is_detected_and_restored(original, tmp_path, generate_log):
    run = _copy(original, tmp_path)
    _interrupt_after(run, 2)
    keyframe = _record(run)["shots"][0]["keyframe_ids"][0]
    png = run / "memory" / f"{keyframe}.png"
    pixels = np.asarray(Image.open(png))
    Image.fromarray(255 - pixels).save(png)  # same size, other pixels
    result = _render(original["script"], run)
    assert result.exit_code == 0, result.output
    assert "shot 1 cannot be kept" in result.stderr and keyframe in result.stderr
    assert len(generate_log) == 3
    for request, _ in generate_log[1:]:  # later shots saw the keyframe as it was rendered
        assert any(np.array_equal(image, pixels) for image in request.memory)
    assert np.array_equal(np.asarray(Image.open(png)), pixels)
    _assert_same_as(original["run"], run)


@pytest.mark.parametrize("hashes", [True, False], ids=["run.json-with-hashes", "older-run.json-without"])
def test_truncated_tail_frames_are_rendered_again(original, tmp_path, generate_log, hashes):
    run = _copy(original, tmp_path)
    _interrupt_after(run, 2)
    if not hashes:  # a run folder written before the hashes were recorded: checked by reading
        record = _record(run)
        for shot in record["shots"]:
            shot.pop("clip_sha256"), shot.pop("tail_sha256")
        (run / "run.json").write_text(json.dumps(record))
    tail = run / "shots" / "shot_001.tail.npz"
    tail.write_bytes(tail.read_bytes()[:200])
    result = _render(original["script"], run)
    assert result.exit_code == 0, result.output
    assert "shot 1 cannot be kept" in result.stderr and "shot_001.tail.npz" in result.stderr
    assert len(generate_log) == 3
    _assert_same_as(original["run"], run)


def test_a_damaged_user_reference_is_refused_with_the_way_out(tmp_path, generate_log):
    image = tmp_path / "hero.png"
    pixels = np.random.default_rng(1).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image)
    run = tmp_path / "run"
    added = runner.invoke(app, ["add-reference", str(run), str(image), "--name", "Hero", "--json"])
    (ref_id,) = json.loads(added.stdout)["added"]
    script = write_script(tmp_path, "boat.json", small_story("Boat", shots=2))
    assert _render(script, run).exit_code == 0
    Image.fromarray(255 - pixels).save(run / "memory" / f"{ref_id}.png")
    record = _record(run)
    record["status"] = "rendering"
    (run / "run.json").write_text(json.dumps(record))
    generate_log.clear()
    result = _render(script, run)
    assert result.exit_code == 2, result.output
    assert ref_id in result.stderr and "add-reference" in result.stderr and "Traceback" not in result.output
    assert generate_log == []
