"""`storymem inspect-memory` and `storymem add-reference` through the Typer app."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.config import MemoryConfig
from storymem_cli.memory import images as images_mod
from storymem_cli.memory.bank import MemoryBank
from storymem_cli.memory.sheet import BACKGROUND, TILE_BACKGROUND, sheet_layout, tile_origin

runner = CliRunner()


def write_image(path, size=(96, 80), seed=0):
    arr = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def run_dir(tmp_path):
    """A run with one reference and three rendered shots (capacity 4: some evictions)."""
    bank = MemoryBank.open(tmp_path / "run", MemoryConfig(capacity=4, sink_size=1))
    bank.add_reference(np.full((70, 70, 3), 200, np.uint8), "Alice")
    g = np.random.default_rng(0)
    for shot in range(3):
        bank.record_conditioning(shot, [e.id for e in bank.conditioning_entries()])
        frames = g.integers(0, 256, size=(5, 24, 40, 3), dtype=np.uint8)
        emb = g.normal(size=(5, 8)).astype(np.float32)
        bank.add_shot_keyframes(shot, frames, [0, 2], emb / np.linalg.norm(emb, axis=1, keepdims=True), g.random(5))
    bank.save()
    return tmp_path / "run"


def snapshot(run):
    files = sorted(p.name for p in (run / "memory").iterdir()) if (run / "memory").exists() else []
    text = (run / "memory.json").read_text() if (run / "memory.json").exists() else None
    return text, files


def test_inspect_json_lists_exactly_the_banks_entries(run_dir):
    bank = MemoryBank.open(run_dir)
    result = runner.invoke(app, ["inspect-memory", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [e["id"] for e in data["entries"]] == [e.id for e in bank.conditioning_entries()]
    for printed, entry in zip(data["entries"], bank.conditioning_entries()):
        stored = entry.model_dump(mode="json")
        if entry.role == "reference":
            assert printed == stored
        else:  # shot numbers for people, as the table and shots/shot_001.mp4 count them
            assert printed["source"]["shot"] == stored["source"]["shot"] + 1 == printed["added_by_shot"]
            assert {**printed, "source": stored["source"], "added_by_shot": stored["added_by_shot"]} == stored
    full = json.loads(runner.invoke(app, ["inspect-memory", str(run_dir), "--json", "--all"]).stdout)
    assert [e["id"] for e in full["entries"]] == [e.id for e in bank.entries]
    assert len(full["entries"]) > len(data["entries"])  # some entries were evicted
    first = next(e for e in full["entries"] if e["id"].startswith("s001-"))  # a keyframe of shot_001.mp4
    assert first["source"]["shot"] == 1 and first["added_by_shot"] == 1
    evicted = next(e for e in full["entries"] if e["evicted_by_shot"] is not None)
    assert evicted["evicted_by_shot"] == MemoryBank.open(run_dir).get(evicted["id"]).evicted_by_shot + 1


def test_inspect_shot_shows_what_that_shot_saw(run_dir):
    bank = MemoryBank.open(run_dir)
    data = json.loads(runner.invoke(app, ["inspect-memory", str(run_dir), "--shot", "3", "--json"]).stdout)
    assert [e["id"] for e in data["entries"]] == bank.conditioning[2]
    missing = runner.invoke(app, ["inspect-memory", str(run_dir), "--shot", "9"])
    assert missing.exit_code == 2 and "shot 9 has no conditioning record" in missing.stderr


def test_inspect_table_names_every_entry(run_dir):
    result = runner.invoke(app, ["inspect-memory", str(run_dir)], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    for e in MemoryBank.open(run_dir).conditioning_entries():
        assert e.id in result.stdout


def test_contact_sheet_has_one_tile_per_entry(run_dir, tmp_path):
    out = tmp_path / "sheets" / "memory.png"
    result = runner.invoke(app, ["inspect-memory", str(run_dir), "--all", "--sheet", str(out)])
    assert result.exit_code == 0, result.output
    n = len(MemoryBank.open(run_dir).entries)
    cols, rows, width, height = sheet_layout(n)
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (width, height)
        sheet = np.asarray(img.convert("RGB"))
    assert rows * cols > n  # the grid has empty cells: check they stay empty
    for i in range(rows * cols):
        x, y = tile_origin(i, cols)
        corner = tuple(sheet[y + 1, x + 1])
        assert corner == (TILE_BACKGROUND if i < n else BACKGROUND), f"cell {i}"


def test_inspect_a_folder_without_memory_is_invalid(tmp_path):
    result = runner.invoke(app, ["inspect-memory", str(tmp_path)])
    assert result.exit_code == 2 and "no memory.json" in result.stderr
    assert not (tmp_path / "memory").exists()


def test_add_reference_creates_the_run_folder(tmp_path):
    img = write_image(tmp_path / "alice.png")
    run = tmp_path / "new-run"
    result = runner.invoke(app, ["add-reference", str(run), str(img), "--name", "Alice", "--json"])
    assert result.exit_code == 0, result.output
    added = json.loads(result.stdout)["added"]
    bank = MemoryBank.open(run)
    assert [e.id for e in bank.entries] == added and bank.entries[0].role == "reference"
    assert bank.entries[0].source.name == "Alice"
    with Image.open(img) as original:
        np.testing.assert_array_equal(bank.load_image(bank.entries[0]), np.asarray(original))


def test_a_toy_sized_frame_is_a_valid_reference(tmp_path):
    """The toy model renders 32x32 shots; a frame of one is a reference as it is, not upscaled first."""
    img = write_image(tmp_path / "hero.png", size=(32, 32))
    result = runner.invoke(app, ["add-reference", str(tmp_path / "run"), str(img), "--json"])
    assert result.exit_code == 0, result.output
    bank = MemoryBank.open(tmp_path / "run")
    assert bank.load_image(bank.entries[0]).shape == (32, 32, 3)


def test_add_reference_on_a_corrupt_image_changes_nothing(run_dir, tmp_path):
    good = write_image(tmp_path / "good.png")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    before = snapshot(run_dir)
    result = runner.invoke(app, ["add-reference", str(run_dir), str(good), str(bad)])
    assert result.exit_code == 2
    assert "broken.jpg" in result.stderr and "good.png" not in result.stderr
    assert snapshot(run_dir) == before


def test_add_reference_on_a_corrupt_image_does_not_create_a_run(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    result = runner.invoke(app, ["add-reference", str(tmp_path / "run"), str(bad)])
    assert result.exit_code == 2 and "broken.png" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("size", "reason"), [((20, 300), "at least 32 px"), ((9000, 70), "at most 8192 px")]
)
def test_tiny_and_huge_images_are_refused(run_dir, tmp_path, size, reason):
    img = write_image(tmp_path / "odd.png", size=size)
    before = snapshot(run_dir)
    result = runner.invoke(app, ["add-reference", str(run_dir), str(img)])
    assert result.exit_code == 2 and "odd.png" in result.stderr and reason in result.stderr
    assert snapshot(run_dir) == before


def test_decompression_bombs_are_refused_from_the_header(tmp_path, monkeypatch):
    monkeypatch.setattr(images_mod, "MAX_PIXELS", 5000)
    img = write_image(tmp_path / "bomb.png", size=(100, 100))
    result = runner.invoke(app, ["add-reference", str(tmp_path / "run"), str(img)])
    assert result.exit_code == 2 and "bomb.png" in result.stderr


def test_transparent_and_grey_images_become_rgb(tmp_path):
    rgba = np.zeros((70, 70, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:35, :, 3] = 255  # top half opaque red, bottom transparent -> white
    Image.fromarray(rgba).save(tmp_path / "a.png")
    Image.fromarray(np.full((70, 70), 9, np.uint8)).save(tmp_path / "g.png")
    out = images_mod.load_images_all_or_nothing([tmp_path / "a.png", tmp_path / "g.png"])
    assert out[0].shape == (70, 70, 3) and tuple(out[0][0, 0]) == (255, 0, 0) and tuple(out[0][-1, -1]) == (255,) * 3
    assert tuple(out[1][5, 5]) == (9, 9, 9)


def test_remove_a_reference(run_dir):
    ref = next(e.id for e in MemoryBank.open(run_dir).entries if e.role == "reference")
    result = runner.invoke(app, ["add-reference", str(run_dir), "--remove", ref, "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["removed"] == [ref]
    assert ref not in [e.id for e in MemoryBank.open(run_dir).entries]
    again = runner.invoke(app, ["add-reference", str(run_dir), "--remove", ref])
    assert again.exit_code == 2 and ref in again.stderr


def test_add_reference_argument_errors(run_dir, tmp_path):
    img = write_image(tmp_path / "a.png")
    assert runner.invoke(app, ["add-reference", str(run_dir)]).exit_code == 2
    mismatch = runner.invoke(app, ["add-reference", str(run_dir), str(img), "--name", "a", "--name", "b"])
    assert mismatch.exit_code == 2 and "--name" in mismatch.stderr


def test_inspect_table_fits_80_columns_one_line_per_entry(run_dir):
    for args in ([], ["--all"]):
        result = runner.invoke(app, ["inspect-memory", str(run_dir), *args], env={"COLUMNS": "80"})
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert max(len(line) for line in lines) <= 80, result.stdout
        entries = MemoryBank.open(run_dir).entries if args else MemoryBank.open(run_dir).conditioning_entries()
        for e in entries:
            (line,) = [line for line in lines if e.id in line]  # the whole row on the id's line
            assert f"{e.score:.3f}" in line if e.score is not None else line.rstrip().endswith("-")


def test_no_score_reads_as_a_dash(tmp_path):
    bank = MemoryBank.open(tmp_path / "run", MemoryConfig())
    frames = np.zeros((3, 24, 40, 3), np.uint8)
    emb = np.eye(3, 8, dtype=np.float32)
    bank.add_shot_keyframes(0, frames, [0], emb, None)  # as a render with --aesthetic none records it
    bank.save()
    result = runner.invoke(app, ["inspect-memory", str(tmp_path / "run")], env={"COLUMNS": "80"})
    row = next(line for line in result.stdout.splitlines() if "shot 1" in line)
    assert row.split()[-1] == "-" and "0.000" not in row


def test_a_toy_sized_keyframe_fills_its_tile(tmp_path):
    from storymem_cli.memory.sheet import TILE, render_contact_sheet

    small = np.zeros((32, 32, 3), np.uint8)
    small[:, :16] = (250, 10, 10)  # left half red, right half black
    sheet = render_contact_sheet([small], [["s001"]])
    x, y = tile_origin(0, 1)
    assert tuple(sheet[y + 2, x + 2]) == (250, 10, 10)  # scaled 6x: the tile's corner is the frame's
    assert tuple(sheet[y + TILE - 3, x + TILE // 2 - 4]) == (250, 10, 10)
    assert tuple(sheet[y + TILE - 3, x + TILE // 2 + 4]) == (0, 0, 0)


def _finished_run(run_dir, shots):
    record = {"format": "storymem-run", "format_version": 1, "story_name": "S",
              "shots": [{"index": i, "status": "done"} for i in range(shots)]}  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(record))


def test_add_reference_on_a_run_with_finished_shots_needs_force(run_dir, tmp_path):
    _finished_run(run_dir, 3)
    before = (run_dir / "memory.json").read_text()
    img = write_image(tmp_path / "bob.png", seed=3)
    refused = runner.invoke(app, ["add-reference", str(run_dir), str(img)])
    assert refused.exit_code == 2
    assert "3 finished shots" in refused.stderr and "renders all 3 again" in refused.stderr
    assert "--force" in refused.stderr
    assert (run_dir / "memory.json").read_text() == before  # nothing changed
    forced = runner.invoke(app, ["add-reference", str(run_dir), str(img), "--force", "--json"])
    assert forced.exit_code == 0, forced.output
    assert "warning:" in forced.stderr and "renders all 3 again" in forced.stderr
    assert len(json.loads(forced.stdout)["added"]) == 1


def test_declining_the_question_changes_nothing_and_exits_5(run_dir, tmp_path, monkeypatch):
    from storymem_cli.cli import memory as memory_cli

    _finished_run(run_dir, 2)
    before = (run_dir / "memory.json").read_text()
    monkeypatch.setattr(memory_cli, "_interactive", lambda: True)  # a person at a terminal
    result = runner.invoke(app, ["add-reference", str(run_dir), str(write_image(tmp_path / "c.png", seed=5))], input="n\n")
    assert result.exit_code == 5, result.output  # declined: not a failure, not bad input
    assert "Change the references?" in result.stderr and "nothing changed" in result.stderr
    assert (run_dir / "memory.json").read_text() == before
    yes = runner.invoke(app, ["add-reference", str(run_dir), str(tmp_path / "c.png")], input="y\n")
    assert yes.exit_code == 0, yes.output


def test_the_same_image_under_another_name_is_refused(tmp_path):
    run = tmp_path / "run"
    img = write_image(tmp_path / "alice.png", seed=7)
    assert runner.invoke(app, ["add-reference", str(run), str(img), "--name", "Alice"]).exit_code == 0
    before = (run / "memory.json").read_text()
    copy = tmp_path / "copy.png"
    copy.write_bytes(img.read_bytes())
    again = runner.invoke(app, ["add-reference", str(run), str(copy), "--name", "Bob"])
    assert again.exit_code == 2
    assert "copy.png: the same image is already in memory as ref-alice-" in again.stderr and "--remove" in again.stderr
    assert (run / "memory.json").read_text() == before
    twice = runner.invoke(app, ["add-reference", str(tmp_path / "new"), str(img), str(copy)])  # in one command
    assert twice.exit_code == 2 and "the same image is already in memory as " + str(img) in twice.stderr


def test_the_warning_says_what_the_next_render_does(tmp_path):
    """add-reference --force warns that shots are rendered again; removing that reference before any
    render returns the run to what its shots were rendered with, and the dry run keeps them all."""
    script = tmp_path / "story.json"
    script.write_text(json.dumps({"story_name": "Refs", "scenes": [
        {"scene_num": 1, "video_prompts": ["a boat on a lake", "the boat turns"], "cut": [True, False]}]}))  # fmt: skip
    run = tmp_path / "run"
    args = ["render", str(script), "-o", str(run), "--model", "tiny", "--device", "cpu", "--frames", "5", "--steps", "1"]
    assert runner.invoke(app, args).exit_code == 0

    added = runner.invoke(app, ["add-reference", str(run), str(write_image(tmp_path / "a.png")), "--force", "--json"])
    assert added.exit_code == 0 and "renders all 2 again" in added.stderr
    plan = json.loads(runner.invoke(app, [*args, "--dry-run", "--json"]).stdout)
    assert [shot["action"] for shot in plan["shots"]] == ["render", "render"]

    ref = json.loads(added.stdout)["added"][0]
    removed = runner.invoke(app, ["add-reference", str(run), "--remove", ref, "--force"])
    assert removed.exit_code == 0, removed.output
    assert "warning:" not in removed.stderr and "keeps all 2 finished shots" in removed.stderr
    plan = json.loads(runner.invoke(app, [*args, "--dry-run", "--json"]).stdout)
    assert [shot["action"] for shot in plan["shots"]] == ["keep", "keep"]
