"""The render command's surface: batch, shards, dry run, refusals, errors, progress lines."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.render import components, story
from storymem_cli.render.video import read_frames

from .conftest import STORY, small_story, write_script

runner = CliRunner()


def render(*args: str):
    return runner.invoke(app, ["render", *args, "--model", "tiny"])


def test_batch_goes_on_past_a_broken_script_and_names_it(tmp_path, generate_log, monkeypatch):
    loads = {"model": 0, "memory": 0}

    def counted(name, load):
        def wrapper(*args):
            loads[name] += 1
            return load(*args)

        return wrapper

    monkeypatch.setattr(components, "load_model", counted("model", components.load_model))
    monkeypatch.setattr(components, "load_memory_parts", counted("memory", components.load_memory_parts))
    scripts = tmp_path / "scripts"
    good_a = write_script(scripts, "a.json", small_story("Story A", shots=1))
    broken = scripts / "broken.json"
    broken.write_text('{"story_name": "B", "scenes": [{"scene_num": 1, "video_prompts": []', encoding="utf-8")
    good_c = write_script(scripts, "c.json", small_story("Story C", shots=1))
    result = render(str(good_a), str(broken), str(good_c), "-o", str(tmp_path / "out"), "--json", "--frames", "5")
    assert result.exit_code == 2, result.output  # the only failure is invalid input
    assert "broken.json" in result.stderr and "1 of 3 stories failed" in result.stderr
    payload = json.loads(result.stdout)
    assert [s["story"] for s in payload["stories"]] == ["Story A", "Story C"]
    assert [Path(f["script"]).name for f in payload["failed"]] == ["broken.json"]
    for name in ("a", "c"):
        assert len(read_frames(tmp_path / "out" / name / "story.mp4")) > 0
    assert not (tmp_path / "out" / "broken").exists()
    assert loads == {"model": 1, "memory": 1}  # loaded once for the whole batch


def test_a_batch_error_names_the_script_once(tmp_path):
    good = write_script(tmp_path, "a.json", small_story("Story A", shots=1))
    missing = tmp_path / "missing.json"
    result = render(str(good), str(missing), "-o", str(tmp_path / "out"), "--dry-run")
    assert result.exit_code == 2
    line = next(line for line in result.stderr.splitlines() if "no such script file" in line)
    assert line == f"error: {missing}: no such script file"


def test_shards_cover_every_script_once(tmp_path):
    scripts = [str(write_script(tmp_path, f"s{i}.json", small_story(f"S{i}"))) for i in range(5)]
    seen = []
    for k in (1, 2, 3):
        result = runner.invoke(
            app, ["render", *scripts, "--model", "tiny", "--dry-run", "--json", "--shard", f"{k}/3", "-o", "out"]
        )
        assert result.exit_code == 0, result.output
        seen += [Path(s["script"]).name for s in json.loads(result.stdout)["stories"]]
    assert sorted(seen) == [f"s{i}.json" for i in range(5)]


def test_dry_run_plans_without_loading_a_model(tmp_path, story_script, monkeypatch):
    def no_model(*_args):
        raise AssertionError("dry run loaded a model")

    monkeypatch.setattr(components, "load_model", no_model)
    result = render(str(story_script), "-o", str(tmp_path / "run"), "--dry-run", "--json", "--seed", "7")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert [(s["mode"], s["seed"], s["action"]) for s in plan["shots"]] == [
        ("t2v", 7, "render"), ("mi2v", 8, "render"), ("m2v", 9, "render"), ("m2v", 10, "render"),
        ("mi2v", 11, "render"),
    ]  # fmt: skip
    assert [s["frames"] for s in plan["shots"]] == [9, 8, 9, 9, 8]
    assert not (tmp_path / "run").exists()
    text = render(str(story_script), "--dry-run", "--continuation", "mm2v", "--frames", "13")
    assert text.exit_code == 0, text.output
    assert "mm2v" in text.stdout and "Lantern Walk" in text.stdout


def test_dry_run_shows_which_shots_a_rerun_keeps(finished, tmp_path):
    edited = json.loads(json.dumps(STORY))
    edited["scenes"][1]["video_prompts"][1] = "The girl in the red coat waves goodbye."
    script = write_script(tmp_path, "lantern.json", edited)
    result = render(str(script), "-o", str(finished["run"]), "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert [s["action"] for s in json.loads(result.stdout)["shots"]] == ["keep"] * 4 + ["render"]


@pytest.mark.parametrize(
    "options, action",
    [
        (["--vae-tiling"], "keep"),  # turned on after running out of GPU memory: a numerical choice
        (["--dtype", "float32"], "keep"),  # what auto picks on the CPU, named
        (["--offload", "group"], "keep"),
        (["--dtype", "bfloat16"], "render"),  # another precision than auto's here: other pixels
    ],
)
def test_hardware_options_resume_and_precision_does_not(finished, options, action):
    """README: device, offload, attention and VAE tiling do not change what the story is; a dtype does,
    unless it is the one auto picks on this device (the finished run was rendered with auto on the CPU)."""
    run = finished["run"]
    result = render(str(finished["script"]), "-o", str(run), "--device", "cpu", *options, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert [s["action"] for s in json.loads(result.stdout)["shots"]] == [action] * 5


def test_a_folder_of_another_story_is_refused(finished, tmp_path, monkeypatch):
    monkeypatch.setattr(components, "load_model", lambda *a: pytest.fail("loaded a model"))
    other = write_script(tmp_path, "other.json", small_story("Another Story"))
    result = render(str(other), "-o", str(finished["run"]))
    assert result.exit_code == 2
    assert "another story" in result.stderr and "--restart" in result.stderr


def test_bad_flags_are_invalid_input(story_script, tmp_path):
    for args, needle in [
        (["--size", "60x48"], "multiples of 16"),
        (["--frames", "10"], "4k+1"),
        (["--continuation", "mm2v", "--frames", "5"], "too few"),
        (["--size", "big"], "WIDTHxHEIGHT"),
        (["--shard", "0/2"], "between 1 and N"),
    ]:
        result = render(str(story_script), "-o", str(tmp_path / "r"), "--dry-run", *args)
        assert result.exit_code == 2, (args, result.output)
        assert needle in result.stderr, (args, result.stderr)


def test_unwritable_output_folder(story_script, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    result = render(str(story_script), "-o", str(blocker / "run"))
    assert result.exit_code == 2
    assert "is a file, so nothing can be written under it" in result.stderr and "Traceback" not in result.output


def test_full_disk_is_a_clear_error_and_the_run_resumes(tmp_path, generate_log, monkeypatch):
    real_write = story.write_clip
    calls = {"n": 0}

    def write_clip(frames, path, fps):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(frames, path, fps)

    monkeypatch.setattr(story, "write_clip", write_clip)
    script = write_script(tmp_path, "boat.json", small_story("Boat", shots=3))
    run = tmp_path / "run"
    result = render(str(script), "-o", str(run), "--frames", "5")
    assert result.exit_code == 1
    assert "disk is full" in result.stderr and "run the same command again" in result.stderr
    assert len(json.loads((run / "run.json").read_text())["shots"]) == 1
    generate_log.clear()
    result = render(str(script), "-o", str(run), "--frames", "5")
    assert result.exit_code == 0, result.output
    assert len(generate_log) == 2  # shot 1 was kept


def test_a14b_without_a_gpu_is_refused(story_script, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = runner.invoke(app, ["render", str(story_script), "-o", str(tmp_path / "r"), "--model", "wan2.2-a14b"])
    assert result.exit_code == 3  # missing hardware
    assert "needs a CUDA GPU" in result.stderr and "docs/models.md" in result.stderr
    assert "Wan-AI/Wan2.2-I2V-A14B-Diffusers" in result.stderr  # the weights it would load
    assert "--model toy" in result.stderr and "--model tiny" not in result.stderr  # toy draws, tiny is noise


def test_cuda_out_of_memory_suggests_offload():
    import torch

    err = components.cuda_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert err is not None and "--offload" in str(err) and err.exit_code == 3  # missing hardware
    assert components.cuda_out_of_memory(RuntimeError("shape mismatch")) is None


def test_plain_progress_lines_on_stderr(tmp_path, generate_log):
    three = small_story("Kite", shots=3)
    three["scenes"][0]["cut"] = [True, False, True]
    script = write_script(tmp_path, "kite.json", three)
    result = render(str(script), "-o", str(tmp_path / "run"), "--frames", "5", "--no-memory")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "run" / "story.mp4")
    assert "shot 3/3 done" in result.stderr and "ETA" in result.stderr
    assert [r.mode for r, _ in generate_log] == ["t2v", "mi2v", "t2v"]
    assert all(r.memory == [] for r, _ in generate_log)
    # preview.png: one tile per shot, each showing its clip's middle frame (issue 23, item 3)
    from PIL import Image

    from storymem_cli.memory.sheet import TILE, sheet_layout, tile_origin
    from storymem_cli.render.preview import PREVIEW_COLUMNS

    sheet = np.asarray(Image.open(tmp_path / "run" / "preview.png").convert("RGB"))
    columns, _, width, height = sheet_layout(3, PREVIEW_COLUMNS)
    assert sheet.shape == (height, width, 3)
    for index in range(3):
        clip = read_frames(tmp_path / "run" / "shots" / f"shot_{index + 1:03d}.mp4")
        frame = clip[len(clip) // 2]  # 64x48, scaled 3x (nearest) into the 192 px tile
        x, y = tile_origin(index, columns)
        top = y + (TILE - 3 * frame.shape[0]) // 2
        assert np.array_equal(sheet[top + 1, x + 1], frame[0, 0]), index  # the block of pixel (0, 0)
        assert np.array_equal(sheet[top + 3 * 20 + 1, x + 3 * 30 + 1], frame[20, 30]), index


def test_restart_renders_everything_again(tmp_path, generate_log):
    script = write_script(tmp_path, "boat.json", small_story("Boat"))
    run = tmp_path / "run"
    assert render(str(script), "-o", str(run), "--frames", "5").exit_code == 0
    (run / "notes.txt").write_text("mine")
    assert render(str(script), "-o", str(run), "--frames", "5").exit_code == 0
    assert len(generate_log) == 2  # the second run kept everything
    result = render(str(script), "-o", str(run), "--frames", "5", "--restart")
    assert result.exit_code == 0, result.output
    assert len(generate_log) == 4 and (run / "notes.txt").read_text() == "mine"


def test_a_local_model_folder_is_named_by_its_path(story_script, tmp_path):
    from storymem_cli.models.tiny import tiny_model_dir

    folder = tiny_model_dir()
    args = ["render", str(story_script), "-o", str(tmp_path / "r"), "--dry-run", "--json", "--model", str(folder)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["model"] == str(folder.resolve())
    assert plan["settings"]["video"]["width"] == 64  # the folder's own preset defaults


def test_a_folder_being_rendered_is_refused(story_script, tmp_path, monkeypatch):
    from storymem_cli.render.runfolder import RunFolder

    monkeypatch.setattr(components, "load_model", lambda *a: pytest.fail("loaded a model"))
    folder = RunFolder(tmp_path / "run")
    folder.prepare()
    with folder.locked():  # as another process's render would hold it
        result = render(str(story_script), "-o", str(folder.root))
    assert result.exit_code == 4  # busy
    assert "another storymem process (a render or add-reference) is writing" in result.stderr


def test_no_memory_rerender_leaves_no_stale_keyframes(tmp_path, generate_log):
    script = write_script(tmp_path, "boat.json", small_story("Boat"))
    run = tmp_path / "run"
    assert render(str(script), "-o", str(run), "--frames", "5").exit_code == 0
    entries = json.loads((run / "memory.json").read_text())["entries"]
    assert entries
    assert all(entry["score"] is None for entry in entries)  # tiny filters with --aesthetic none: no score, not 0
    result = render(str(script), "-o", str(run), "--frames", "5", "--no-memory")
    assert result.exit_code == 0, result.output
    assert len(generate_log) == 4  # a different setting: every shot again
    bank = json.loads((run / "memory.json").read_text())
    assert bank["entries"] == [] and bank["conditioning"] == {}


def test_device_and_memory_options_reach_the_model(tmp_path):
    # No generate_log fixture: its session cache of loaded models ignores device options.
    script = write_script(tmp_path, "one.json", small_story("One", shots=1))
    run = tmp_path / "run"
    result = render(
        str(script), "-o", str(run), "--frames", "5",
        "--offload", "group", "--vae-tiling", "--attention", "native", "--device", "cpu", "--dtype", "float32",
    )
    assert result.exit_code == 0, result.output
    model = json.loads((run / "run.json").read_text())["model"]
    assert (model["offload"], model["vae_tiling"], model["attention_backend"]) == ("group", True, "native")
    assert (model["device"], model["dtype"]) == ("cpu", "float32")


def test_every_runtime_option_is_a_flag_with_its_fields_default_and_reaches_the_settings(tmp_path):
    """The flags are read into RuntimeOptions by name (cli/fields.py): each field has one, with the
    field's default, and a dry run records every value in settings.runtime."""
    import typer.main

    from storymem_cli.models.runtime import RuntimeOptions

    params = {param.name: param for param in typer.main.get_command(app).commands["render"].params}
    for name, field in RuntimeOptions.model_fields.items():
        if name == "fuse_lora":  # no flag: always on (measured faster), off only through the Python API
            assert name not in params
            continue
        default = params[name].default
        assert getattr(default, "value", default) == field.default, name
    flags = {"device": ["--device", "cpu"], "dtype": ["--dtype", "bfloat16"], "offload": ["--offload", "model"],
             "vae_tiling": ["--vae-tiling"], "attention_backend": ["--attention", "flash"],
             "cache": ["--cache", "first-block"], "cache_threshold": ["--cache-threshold", "0.2"],
             "cache_interval": ["--cache-interval", "3"], "compile": ["--compile"], "quantize": ["--quantize", "fp8"],
             "magcache_threshold": ["--magcache-threshold", "0.1"], "magcache_k": ["--magcache-k", "3"],
             "magcache_retention": ["--magcache-retention", "0.2"], "magcache_experts": ["--magcache-experts", "both"]}  # fmt: skip
    alone = {"magcache_curve", "magcache_calibrate"}  # a file each; calibrating refuses a cache: their own dry run
    assert set(flags) | alone == set(RuntimeOptions.model_fields) - {"fuse_lora"}
    script = write_script(tmp_path, "one.json", small_story("One", shots=1))
    result = render(str(script), "-o", str(tmp_path / "run"), "--dry-run", "--json", *sum(flags.values(), []))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["settings"]["runtime"] == {
        "device": "cpu", "dtype": "bfloat16", "offload": "model", "vae_tiling": True, "attention_backend": "flash",
        "fuse_lora": True, "cache": "first-block", "cache_threshold": 0.2, "cache_interval": 3, "compile": True,
        "quantize": "fp8", "magcache_threshold": 0.1, "magcache_k": 3, "magcache_retention": 0.2,
        "magcache_experts": "both", "magcache_curve": None, "magcache_calibrate": None,
    }  # fmt: skip
    curve = tmp_path / "curve.json"
    curve.write_text(json.dumps({"format": "storymem-magcache-curves/1", "curves": {}}))
    result = render(str(script), "-o", str(tmp_path / "run2"), "--dry-run", "--json", "--magcache-curve", str(curve),
                    "--magcache-calibrate", str(tmp_path / "out.json"))  # fmt: skip
    assert result.exit_code == 0, result.output
    runtime = json.loads(result.stdout)["settings"]["runtime"]
    assert (runtime["magcache_curve"], runtime["magcache_calibrate"]) == (str(curve), str(tmp_path / "out.json"))


def test_unknown_offload_mode_is_invalid_input(tmp_path):
    script = write_script(tmp_path, "one.json", small_story("One", shots=1))
    result = render(str(script), "--offload", "sometimes", "--dry-run")
    assert result.exit_code == 2
    assert "sometimes" in result.output


def test_new_weights_under_the_same_model_name_render_again(tmp_path):
    import os
    import shutil

    from storymem_cli.models.tiny import tiny_model_dir

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir(), model)
    script = write_script(tmp_path, "boat.json", small_story("Boat", shots=2))
    args = [str(script), "-o", str(tmp_path / "run"), "--model", str(model), "--frames", "5", "--json"]
    first = runner.invoke(app, ["render", *args])
    assert first.exit_code == 0, first.output

    def actions():
        result = runner.invoke(app, ["render", *args, "--dry-run"])
        assert result.exit_code == 0, result.output
        return [shot["action"] for shot in json.loads(result.stdout)["shots"]]

    assert actions() == ["keep", "keep"]
    weight = next(model.rglob("*.safetensors"))  # retrained in place: same name and size, newer file
    stat = weight.stat()
    os.utime(weight, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert actions() == ["render", "render"]
    again = runner.invoke(app, ["render", *args])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["kept_shots"] == 0
    assert actions() == ["keep", "keep"]
