"""`storymem render` end to end with the REAL tiny model (random weights, CPU)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.memory.bank import MemoryBank
from storymem_cli.render.video import read_frames

from .conftest import STORY, write_script

runner = CliRunner()


def render(*args: str):
    return runner.invoke(app, ["render", *args, "--model", "tiny", "--device", "cpu"])


def run_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def test_story_renders_with_cuts_and_continuations(finished):
    record = run_json(finished["run"])
    assert record["status"] == "done"
    assert [s["mode"] for s in record["shots"]] == ["t2v", "mi2v", "m2v", "m2v", "mi2v"]
    assert [s["seed"] for s in record["shots"]] == [0, 1, 2, 3, 4]  # distinct across scenes
    assert [s["scene"] for s in record["shots"]] == [1, 1, 1, 2, 2]
    assert len(finished["log"]) == 5


def test_story_frames_equal_sum_of_trimmed_shots(finished):
    record = run_json(finished["run"])
    generated = [len(frames) for _, frames in finished["log"]]
    trims = {"t2v": 0, "m2v": 0, "mi2v": 1}
    expected = [n - trims[s["mode"]] for n, s in zip(generated, record["shots"])]
    assert [s["trimmed_frames"] for s in record["shots"]] == expected
    story = read_frames(finished["run"] / "story.mp4")
    assert len(story) == sum(expected) == record["total_frames"]
    clips = [read_frames(finished["run"] / s["path"]) for s in record["shots"]]
    assert [len(c) for c in clips] == expected
    assert np.array_equal(story, np.concatenate(clips))


def test_mi2v_shots_start_from_the_previous_shots_last_frame(finished):
    log = finished["log"]
    checked = 0
    for i, (request, _) in enumerate(log):
        if request.mode == "mi2v":
            previous_frames = log[i - 1][1]
            assert len(request.first_frames) == 1
            assert request.first_frames[0].tobytes() == previous_frames[-1].tobytes()
            checked += 1
        else:
            assert request.first_frames == []
    assert checked == 2


def test_memory_conditioning_is_recorded(finished):
    record = run_json(finished["run"])
    bank = MemoryBank.open(finished["run"])
    log = finished["log"]
    assert log[0][0].memory == []  # the T2V first shot has no memory
    for shot, (request, _) in zip(record["shots"], log):
        assert len(request.memory) == len(shot["memory_ids"])
        for image, entry_id in zip(request.memory, shot["memory_ids"]):
            assert np.array_equal(image, bank.load_image(bank.get(entry_id)))
        assert bank.conditioning[shot["index"]] == shot["memory_ids"]
    assert record["shots"][0]["keyframe_ids"], "the first shot seeds the memory"
    assert record["shots"][1]["memory_ids"] == record["shots"][0]["keyframe_ids"]


def test_json_summary(finished):
    summary = finished["summary"]
    assert summary["video"] == str(finished["run"] / "story.mp4")
    assert [s["shot"] for s in summary["shots"]] == [1, 2, 3, 4, 5]
    first = summary["shots"][1]
    assert set(first) >= {"scene", "shot", "mode", "seed", "frames", "path", "memory_ids"}
    assert Path(first["path"]).is_file()


def test_rerun_of_a_finished_story_renders_nothing(finished, generate_log, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished["run"], run)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    result = render(str(finished["script"]), "-o", str(run))
    assert result.exit_code == 0, result.output
    assert generate_log == []
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before


def test_edited_shot_4_rerenders_from_there(finished, generate_log, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished["run"], run)
    edited = json.loads(json.dumps(STORY))
    edited["scenes"][1]["video_prompts"][0] = "The girl in the red coat buys a candied apple at a stall."
    script = write_script(tmp_path / "scripts", "lantern.json", edited)
    kept = {i: (run / f"shots/shot_{i:03d}.mp4") for i in (1, 2, 3)}
    stamps = {i: (p.stat().st_mtime_ns, p.read_bytes()) for i, p in kept.items()}

    result = render(str(script), "-o", str(run))
    assert result.exit_code == 0, result.output
    assert [request.prompt for request, _ in generate_log] == [
        edited["scenes"][1]["video_prompts"][0],
        edited["scenes"][1]["video_prompts"][1],
    ]
    for i, path in kept.items():
        assert (path.stat().st_mtime_ns, path.read_bytes()) == stamps[i]
    old, new = run_json(finished["run"]), run_json(run)
    assert new["shots"][:3] == old["shots"][:3]
    assert new["shots"][3]["prompt"] != old["shots"][3]["prompt"]
    assert len(read_frames(run / "story.mp4")) == new["total_frames"]


def test_references_seed_the_memory_and_a_new_reference_rerenders(tmp_path, generate_log):
    from PIL import Image

    from .conftest import small_story

    scripts = tmp_path / "scripts"
    scripts.mkdir()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(scripts / "hero.png")
    story = small_story("Hero", shots=2) | {"references": [{"image": "hero.png", "name": "Hero"}]}
    script = write_script(scripts, "hero.json", story)
    run = tmp_path / "run"
    assert render(str(script), "-o", str(run), "--frames", "5").exit_code == 0
    first = generate_log[0][0]
    assert first.mode == "m2v" and len(first.memory) == 1  # MR2V: the reference is m_0, generated as M2V
    assert [shot["mode"] for shot in run_json(run)["shots"]] == ["mr2v", "mi2v"]  # as the docs name it
    assert first.memory[0].shape == (30, 40, 3) and (first.memory[0] == [200, 30, 30]).all()

    Image.new("RGB", (40, 30), (30, 30, 200)).save(scripts / "hero.png")  # a new picture of the hero
    generate_log.clear()
    assert render(str(script), "-o", str(run), "--frames", "5").exit_code == 0
    assert len(generate_log) == 2  # the references changed: every shot depends on them
    assert (generate_log[0][0].memory[0] == [30, 30, 200]).all()
    refs = [e for e in MemoryBank.open(run).entries if e.role == "reference"]
    assert len(refs) == 1  # the old picture left the memory


def test_add_reference_before_render_seeds_the_memory_and_survives_restart(tmp_path, generate_log):
    from PIL import Image

    from .conftest import small_story

    script = write_script(tmp_path, "boat.json", small_story("Boat", shots=2))  # no references
    Image.new("RGB", (80, 64), (20, 160, 40)).save(tmp_path / "sailor.png")
    run = tmp_path / "run"
    added = runner.invoke(app, ["add-reference", str(run), str(tmp_path / "sailor.png"), "--name", "Sailor"])
    assert added.exit_code == 0, added.output

    # A folder that add-reference made is not "another tool's folder": render uses it.
    assert render(str(script), "-o", str(run), "--frames", "5").exit_code == 0
    first = generate_log[0][0]
    assert first.mode == "m2v" and len(first.memory) == 1  # MR2V from the user's reference
    assert (first.memory[0] == [20, 160, 40]).all()
    ref_id = [e.id for e in MemoryBank.open(run).entries if e.role == "reference"]
    assert run_json(run)["shots"][0]["memory_ids"] == ref_id

    generate_log.clear()
    assert render(str(script), "-o", str(run), "--frames", "5", "--restart").exit_code == 0
    assert len(generate_log) == 2 and generate_log[0][0].mode == "m2v"
    assert [e.id for e in MemoryBank.open(run).entries if e.role == "reference"] == ref_id


def test_mm2v_continues_from_the_previous_shots_last_5_frames(tmp_path, generate_log):
    from .conftest import small_story

    script = write_script(tmp_path, "boat.json", small_story("Boat", shots=2))
    run = tmp_path / "run"
    result = render(str(script), "-o", str(run), "--continuation", "mm2v", "--json")
    assert result.exit_code == 0, result.output
    (first, first_frames), (second, second_frames) = generate_log
    assert second.mode == "mm2v" and len(second.first_frames) == 5
    for given, previous in zip(second.first_frames, first_frames[-5:], strict=True):
        assert given.tobytes() == previous.tobytes()
    shots = json.loads(result.stdout)["shots"]
    assert [s["frames"] for s in shots] == [len(first_frames), len(second_frames) - 5]
    assert len(read_frames(run / "story.mp4")) == sum(s["frames"] for s in shots)


def test_an_overview_edit_renders_nothing_but_updates_the_record(finished, generate_log, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished["run"], run)
    edited = json.loads(json.dumps(STORY))
    edited["story_overview"] = "A quieter telling of the same walk."
    script = write_script(tmp_path / "scripts", "lantern.json", edited)
    clips = {p: p.read_bytes() for p in (run / "shots").glob("*.mp4")}
    result = render(str(script), "-o", str(run))
    assert result.exit_code == 0, result.output
    assert generate_log == []
    assert run_json(run)["script_sha256"] != run_json(finished["run"])["script_sha256"]
    assert json.loads((run / "script.json").read_text())["story_overview"] == edited["story_overview"]
    assert all(p.read_bytes() == data for p, data in clips.items())
