"""Render options the toy model needs: --upscale, --keyframes first-frame, the pixels embedder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.memory.bank import MemoryBank
from storymem_cli.models.presets import TINY, MemoryDefaults
from storymem_cli.render import runtime
from storymem_cli.render.plan import trim_frames
from storymem_cli.render.runfolder import RunFolder
from storymem_cli.render.video import read_frames, upscale_nearest

from .conftest import small_story, write_script

runner = CliRunner()


def render(*args: str):
    return runner.invoke(app, ["render", *args, "--model", "tiny", "--frames", "5", "--json"])


def three_cuts(name: str) -> dict:
    story = small_story(name, shots=3)
    story["scenes"][0]["cut"] = [True, True, True]
    return story


def test_upscale_writes_larger_clips_and_keeps_memory_and_tails_native(tmp_path, generate_log):
    script = write_script(tmp_path, "s.json", small_story("Big", shots=2))
    run = tmp_path / "run"
    result = render(str(script), "-o", str(run), "--upscale", "3")
    assert result.exit_code == 0, result.output
    height, width = TINY.video.height, TINY.video.width
    record = json.loads((run / "run.json").read_text())
    assert record["settings"]["upscale"] == 3
    folder = RunFolder(run)
    for index, (request, frames) in enumerate(generate_log):
        clip = read_frames(folder.clip(index))
        shot = trim_frames(frames, request.mode)
        assert clip.shape == (len(shot), 3 * height, 3 * width, 3)
        # x264 is lossy: the clip is close to the blown-up frames, and much further from another shot's.
        own = np.abs(clip[-1].astype(int) - upscale_nearest(shot[-1:], 3)[0]).mean()
        other = np.abs(clip[-1].astype(int) - upscale_nearest(generate_log[1 - index][1][-1:], 3)[0]).mean()
        assert own < 8 and other > 2 * own, (own, other)
        assert np.array_equal(folder.load_tail(index), frames[-5:])  # lossless, model size
    assert read_frames(run / "story.mp4").shape[1:3] == (3 * height, 3 * width)
    bank = MemoryBank.open(run)
    assert bank.entries and all((e.width, e.height) == (width, height) for e in bank.entries)
    assert all(bank.load_image(e).shape == (height, width, 3) for e in bank.entries)

    # Another --upscale rewrites every shot (the clips are the only full copy of the frames),
    # generating the same frames again ...
    first_frames = [frames for _, frames in generate_log]
    generate_log.clear()
    again = render(str(script), "-o", str(run), "--upscale", "2")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["kept_shots"] == 0
    assert all(np.array_equal(a, b) for a, (_, b) in zip(first_frames, generate_log, strict=True))
    assert read_frames(folder.clip(1)).shape[1:3] == (2 * height, 2 * width)
    assert read_frames(run / "story.mp4").shape[1:3] == (2 * height, 2 * width)
    # ... and the same --upscale keeps them all.
    generate_log.clear()
    same = render(str(script), "-o", str(run), "--upscale", "2")
    assert json.loads(same.stdout)["kept_shots"] == 2 and generate_log == []


def test_upscale_out_of_range_is_refused_naming_the_flag(tmp_path):
    script = write_script(tmp_path, "s.json", small_story("Big", shots=1))
    for bad in ("0", "17"):
        result = render(str(script), "-o", str(tmp_path / "run"), "--upscale", bad)
        assert result.exit_code == 2 and "--upscale" in result.output, result.output
    assert not (tmp_path / "run").exists()
    # Within range but beyond what H.264 encodes: refused before any model loads.
    wide = runner.invoke(app, ["render", str(script), "--model", "tiny", "--size", "1040x64", "--upscale", "16",
                               "-o", str(tmp_path / "run"), "--dry-run"])  # fmt: skip
    assert wide.exit_code == 2 and "--upscale 16" in wide.output and "--upscale 15" in wide.output, wide.output
    ok = runner.invoke(app, ["render", str(script), "--model", "tiny", "--size", "1024x64", "--upscale", "16",
                             "-o", str(tmp_path / "run"), "--dry-run"])  # fmt: skip
    assert ok.exit_code == 0, ok.output


def test_first_frame_keyframes_take_frame_zero_of_every_shot(tmp_path, generate_log):
    script = write_script(tmp_path, "s.json", three_cuts("Firsts"))
    run = tmp_path / "run"
    result = render(str(script), "-o", str(run), "--keyframes", "first-frame")
    assert result.exit_code == 0, result.output
    record = json.loads((run / "run.json").read_text())
    assert record["settings"]["memory"]["selection"] == "first-frame"
    bank = MemoryBank.open(run)
    assert [(e.source.shot, e.source.frame) for e in bank.entries] == [(0, 0), (1, 0), (2, 0)]
    assert [shot["keyframe_ids"] for shot in record["shots"]] == [[e.id] for e in bank.entries]
    for entry, (request, frames) in zip(bank.entries, generate_log):
        assert np.array_equal(bank.load_image(entry), trim_frames(frames, request.mode)[0])
    # The memory each shot saw: the first frames of the shots before it.
    assert [len(request.memory) for request, _ in generate_log] == [0, 1, 2]

    inspect = runner.invoke(app, ["inspect-memory", str(run), "--json"])
    assert inspect.exit_code == 0, inspect.output
    assert [e["source"]["frame"] for e in json.loads(inspect.stdout)["entries"]] == [0, 0, 0]
    table = runner.invoke(app, ["inspect-memory", str(run), "--shot", "3"])
    assert table.exit_code == 0 and bank.entries[1].id in table.stdout

    # Switching back to semantic selection is a settings change: every shot is rendered again.
    dry = runner.invoke(app, ["render", str(script), "-o", str(run), "--model", "tiny", "--frames", "5",
                              "--dry-run", "--json"])  # fmt: skip
    assert [s["action"] for s in json.loads(dry.stdout)["shots"]] == ["render"] * 3


def test_a_preset_can_name_the_pixels_embedder(tmp_path, generate_log, monkeypatch):
    pixels_tiny = TINY.model_copy(update={"memory": MemoryDefaults(embedder="pixels", aesthetic="none")})
    monkeypatch.setattr(runtime, "resolve_model", lambda name: pixels_tiny)
    script = write_script(tmp_path, "s.json", small_story("Pixels", shots=2))
    run = tmp_path / "run"
    result = render(str(script), "-o", str(run))
    assert result.exit_code == 0, result.output
    assert json.loads((run / "run.json").read_text())["settings"]["embedder"] == "pixels"
    bank = MemoryBank.open(run)
    assert bank.entries and all(e.embedder == "pixels" for e in bank.entries)
    assert all(e.embedding_array().shape == (768,) for e in bank.entries)
    assert runner.invoke(app, ["inspect-memory", str(run), "--all"]).exit_code == 0


def test_toy_prompts_outside_the_grammar_are_named():
    from storymem_cli.render.plan import plan_story
    from storymem_cli.render.story import toy_prompt_warning
    from storymem_cli.script import load_script

    script, _ = load_script(Path(__file__).parents[2] / "examples" / "toy_short.json")
    plans = plan_story(script.shots, has_references=False, continuation="mi2v", use_memory=True, base_seed=0)
    assert toy_prompt_warning(plans) is None  # our toy example speaks the grammar
    plans[2] = plans[2].__class__(**{**plans[2].__dict__, "prompt": "A boy runs up a grassy hill."})
    warning = toy_prompt_warning(plans)
    assert warning is not None and "1 of 5 prompts" in warning and "shot 3" in warning and "grassy" in warning


def test_small_clips_get_a_note_suggesting_upscale(tmp_path, generate_log):
    script = write_script(tmp_path, "s.json", small_story("Small", shots=1))
    result = render(str(script), "-o", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    w, h = TINY.video.width, TINY.video.height  # 64x48; the toy model's 32x32 gets --upscale 8
    assert f"are {w}x{h} pixels" in result.stderr and f"--upscale 4 writes them {4 * w}x{4 * h}" in result.stderr
    json.loads(result.stdout)  # the note is on stderr only
    asked = render(str(script), "-o", str(tmp_path / "run"), "--upscale", "1")  # the user's own choice: no note
    assert asked.exit_code == 0 and "--upscale" not in asked.stderr


def test_the_toy_models_suggestion_is_upscale_8():
    from storymem_cli.cli.render import small_video_note
    from storymem_cli.models.presets import TOY

    assert "--upscale 8 writes them 256x256" in small_video_note(TOY.video.width, TOY.video.height)
    assert small_video_note(832, 480) is None
