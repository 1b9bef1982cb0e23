"""Series: `render part2.json --memory-from runs/part1` starts from part 1's memory (REAL tiny model).

Part 1 is only read; its memory becomes references of part 2 with the characters each entry showed;
part 2 stopped mid-shot resumes to the uninterrupted video; a missing, unfinished, damaged or
other-model part 1 is refused before anything renders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.render.video import read_frames

from .conftest import record_generate, write_script

runner = CliRunner()
CAST = [{"name": "Mia", "aliases": ["the girl", "red coat"]}, {"name": "Bob", "aliases": ["the baker"]}]
PART1 = {
    "story_name": "Mia, part 1",
    "characters": CAST,
    "scenes": [{"scene_num": 1, "video_prompts": ["A girl in a red coat walks to the bakery.",
                                                  "The baker waves from his door.",
                                                  "Mia buys bread."], "cut": [True, True, True]}],
}  # fmt: skip
PART2 = {
    "story_name": "Mia, part 2",
    "characters": CAST,
    "scenes": [{"scene_num": 1, "video_prompts": ["Mia eats the bread in the park.", "The baker closes his shop.",
                                                  "The girl walks home."], "cut": [True, True, True]}],
}  # fmt: skip
# first-frame: one keyframe per shot, never deduplicated (the tiny model's noise frames often are)
CPU = ["--model", "tiny", "--device", "cpu", "--keyframes", "first-frame"]


def tree(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


def run_json(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """Part 1, then part 2 from its memory, uninterrupted, with part 2's generate calls."""
    root = tmp_path_factory.mktemp("series")
    part1, part2 = write_script(root, "part1.json", PART1), write_script(root, "part2.json", PART2)
    patch = pytest.MonkeyPatch()
    log: list = []
    record_generate(patch, log)
    try:
        first = runner.invoke(app, ["render", str(part1), "-o", str(root / "part1"), *CPU])
        assert first.exit_code == 0, first.output
        before = tree(root / "part1")
        log.clear()
        second = runner.invoke(app, ["render", str(part2), "-o", str(root / "part2"), "--memory-from",
                                     str(root / "part1"), *CPU])  # fmt: skip
        assert second.exit_code == 0, second.output
    finally:
        patch.undo()
    return {"root": root, "part1": root / "part1", "part2": root / "part2", "script": part2, "before": before,
            "log": log}  # fmt: skip


def test_part_two_starts_from_part_ones_memory_and_leaves_it_untouched(series):
    assert tree(series["part1"]) == series["before"]
    source = json.loads((series["part1"] / "memory.json").read_text())
    bank = json.loads((series["part2"] / "memory.json").read_text())
    pinned = [e for e in bank["entries"] if e["source"].get("origin") == "series"]
    assert pinned and all(e["role"] == "reference" for e in pinned)
    # The earlier run's keyframes, with the characters they showed.
    by_pixels = {e["sha256"]: e.get("characters", []) for e in source["entries"]}
    assert all(e.get("characters", []) == by_pixels[e["sha256"]] for e in pinned)
    assert {c for e in pinned for c in e.get("characters", [])} == {"Mia", "Bob"}
    record = run_json(series["part2"])
    assert record["memory_from"]["run_dir"] == str(series["part1"].resolve())
    assert len(record["memory_from"]["identity"]) == 64
    assert record["shots"][0]["mode"] == "mr2v"  # part 1's memory (references now) conditions part 2's first shot
    first = record["shots"][0]
    assert first["memory_ids"] and {w["why"] for w in first["memory_why"]} == {"names Mia"}
    assert len(series["log"][0][0].memory) == len(first["memory_ids"])


def test_part_two_renders_again_when_part_one_changes(series, tmp_path):
    part1, part2 = tmp_path / "part1", tmp_path / "part2"
    shutil.copytree(series["part1"], part1)
    shutil.copytree(series["part2"], part2)

    def actions() -> list[str]:
        args = ["render", str(series["script"]), "-o", str(part2), "--memory-from", str(part1), "--dry-run", "--json"]
        result = runner.invoke(app, [*args, *CPU])
        assert result.exit_code == 0, result.output
        return [shot["action"] for shot in json.loads(result.stdout)["shots"]]

    assert actions() == ["keep"] * 3  # the same earlier run, moved: its identity is its content
    record = run_json(part1)
    (part1 / "run.json").write_text(json.dumps({**record, "video_sha256": "0" * 64}))  # another part 1
    assert actions() == ["render"] * 3


def test_a_part_two_stopped_mid_shot_resumes_to_the_uninterrupted_video(series, tmp_path, generate_log, monkeypatch):
    """Stopped in the middle of shot 2 (a Ctrl-C there; tests/render/test_resume_kill.py kills real
    processes): the same command resumes from part 1's memory and ends with the uninterrupted video."""
    from .conftest import RecordingModel

    run = tmp_path / "part2"
    args = ["render", str(series["script"]), "-o", str(run), "--memory-from", str(series["part1"]), *CPU]
    generate = RecordingModel.generate

    def stop_in_shot_2(self, request, progress=None):
        if len(generate_log) == 1:
            raise KeyboardInterrupt
        return generate(self, request, progress)

    monkeypatch.setattr(RecordingModel, "generate", stop_in_shot_2)
    stopped = runner.invoke(app, args)
    assert stopped.exit_code == 130, stopped.output
    assert len(run_json(run)["shots"]) == 1 and not (run / "story.mp4").exists()

    monkeypatch.setattr(RecordingModel, "generate", generate)
    generate_log.clear()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(generate_log) == 2  # shot 1 was kept
    assert np.array_equal(read_frames(run / "story.mp4"), read_frames(series["part2"] / "story.mp4"))
    resumed, whole = run_json(run), run_json(series["part2"])
    assert [s["memory_ids"] for s in resumed["shots"]] == [s["memory_ids"] for s in whole["shots"]]
    assert resumed["memory_from"] == whole["memory_from"]


def _refused(args: list[str]) -> str:
    result = runner.invoke(app, ["render", *args, "--dry-run"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.output


def test_a_bad_earlier_run_is_refused(series, tmp_path):
    script = str(series["script"])
    out = ["-o", str(tmp_path / "out")]
    assert "no such run folder" in _refused([script, *out, "--memory-from", str(tmp_path / "nowhere"), *CPU])
    assert "rendered with model 'tiny'" in _refused([script, *out, "--memory-from", str(series["part1"]),
                                                     "--model", "toy"])  # fmt: skip

    damaged = tmp_path / "damaged"
    shutil.copytree(series["part1"], damaged)
    entry = json.loads((damaged / "memory.json").read_text())["entries"][0]
    (damaged / entry["file"]).unlink()
    assert "is damaged" in _refused([script, *out, "--memory-from", str(damaged), *CPU])

    unfinished = tmp_path / "unfinished"
    shutil.copytree(series["part1"], unfinished)
    record = run_json(unfinished)
    (unfinished / "run.json").write_text(json.dumps({**record, "status": "rendering"}))
    assert "has not finished" in _refused([script, *out, "--memory-from", str(unfinished), *CPU])

    assert "own run folder" in _refused([script, "-o", str(series["part1"]), "--memory-from", str(series["part1"]), *CPU])
