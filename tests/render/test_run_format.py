"""run.json format versions: a folder rendered by an earlier storymem still resumes with its shots.

Format 1 kept the runtime options (device, dtype, the fast modes, ...) flat in ``settings``;
format 2 nests them under ``settings.runtime``; format 3 counts shots from 1 (``shot``,
``shot_in_scene``) and names a first shot from references ``mr2v`` (format 2: ``m2v``). A format-1 folder is made here the honest way
that needs no old storymem: render with this one, then write run.json back in format 1's layout
(the exact keys format 1 had are listed below, taken from a run.json it wrote).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.render import components
from storymem_cli.render.runfolder import RUN_FORMAT_VERSION, upgrade_record

from .conftest import small_story, write_script

runner = CliRunner()

# The settings keys of a run.json written by format 1 (storymem before issue 24's options model).
FORMAT_1_SETTINGS = {
    "model", "video", "steps", "seed", "guidance", "guidance_2", "continuation", "rope", "memory", "embedder",
    "use_memory", "lora", "style_loras", "offload", "device", "dtype", "vae_tiling", "attention_backend", "cache",
    "cache_threshold", "cache_interval", "compile", "quantize", "upscale",
}  # fmt: skip
# Settings format 2 gained later (scheduler and shifts, characters, series): a format-1 run.json has none of them.
ADDED_AFTER_FORMAT_1 = ("scheduler", "flow_shift_t2v", "flow_shift_m2v", "retrieval", "describe_characters", "memory_from")


def as_format_2(record: dict) -> dict:
    """A format-3 record written back as format 2 wrote it: shot_in_scene from 0, no "shot", MR2V as m2v."""

    def shot(entry: dict) -> dict:
        old = {key: value for key, value in entry.items() if key != "shot"}
        old["shot_in_scene"] -= 1
        if old["mode"] == "mr2v":
            old["mode"] = "m2v"
        return old

    return {**record, "format_version": 2, "shots": [shot(s) for s in record["shots"]],
            "planned_shots": [shot(s) for s in record["planned_shots"]]}  # fmt: skip


def as_format_1(record: dict) -> dict:
    """A format-3 record written back as format 1 wrote it: format 2's shots, runtime flat, no fuse_lora
    nor the MagCache options (not settings then), none of the settings format 2 gained later."""
    record = as_format_2(record)
    settings = {key: value for key, value in record["settings"].items() if key not in ADDED_AFTER_FORMAT_1}
    runtime = {key: value for key, value in settings.pop("runtime").items()
               if key != "fuse_lora" and not key.startswith("magcache_")}  # fmt: skip
    return {**record, "format_version": 1, "settings": {**settings, **runtime}}


def render(script, run, *extra):
    return runner.invoke(app, ["render", str(script), "-o", str(run), "--model", "tiny", "--device", "cpu",
                               "--steps", "2", "--cache", "first-block", *extra])  # fmt: skip


@pytest.fixture
def format_1_run(tmp_path):
    script = write_script(tmp_path, "story.json", small_story("Old", shots=2))
    run = tmp_path / "run"
    assert render(script, run).exit_code == 0
    record = json.loads((run / "run.json").read_text())
    old = as_format_1(record)
    assert set(old["settings"]) == FORMAT_1_SETTINGS
    (run / "run.json").write_text(json.dumps(old, indent=2))
    return script, run, record


def test_a_format_1_run_keeps_every_shot_and_is_written_again_as_format_2(format_1_run, monkeypatch):
    script, run, rendered = format_1_run
    clips = {path.name: path.read_bytes() for path in (run / "shots").iterdir()}

    plan = render(script, run, "--dry-run", "--json")
    assert plan.exit_code == 0, plan.output
    assert [shot["action"] for shot in json.loads(plan.stdout)["shots"]] == ["keep", "keep"]
    assert json.loads((run / "run.json").read_text())["format_version"] == 1  # a dry run writes nothing

    monkeypatch.setattr(components, "load_model", lambda *a: pytest.fail("a kept story loads no model"))
    result = render(script, run, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["kept_shots"] == 2
    record = json.loads((run / "run.json").read_text())
    assert record["format_version"] == RUN_FORMAT_VERSION == 3 and "upgraded_from" not in record
    assert record["settings"] == rendered["settings"]  # the nested layout again
    assert record["shots"] == rendered["shots"] and record["settings_fingerprint"] == rendered["settings_fingerprint"]
    assert {path.name: path.read_bytes() for path in (run / "shots").iterdir()} == clips


def test_a_half_finished_format_1_run_renders_only_the_rest(format_1_run, generate_log):
    script, run, rendered = format_1_run
    old = json.loads((run / "run.json").read_text())
    old["shots"], old["status"] = old["shots"][:1], "rendering"  # killed after shot 1
    (run / "run.json").write_text(json.dumps(old))
    generated = len(generate_log)
    result = render(script, run, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["kept_shots"] == 1 and len(generate_log) - generated == 1  # shot 2 only
    assert json.loads((run / "run.json").read_text())["format_version"] == 3


def test_a_format_2_run_from_references_keeps_every_shot_and_counts_from_1(tmp_path, monkeypatch):
    from PIL import Image

    Image.new("RGB", (40, 32), (200, 30, 30)).save(tmp_path / "hero.png")
    story = small_story("Refs", shots=2) | {"references": [{"image": "hero.png", "name": "Hero"}]}
    script = write_script(tmp_path, "story.json", story)
    run = tmp_path / "run"
    assert render(script, run).exit_code == 0
    rendered = json.loads((run / "run.json").read_text())
    assert [(s["shot"], s["shot_in_scene"], s["mode"]) for s in rendered["shots"]] == [(1, 1, "mr2v"), (2, 2, "mi2v")]
    old = as_format_2(rendered)
    assert old["shots"][0]["mode"] == "m2v" and old["shots"][0]["shot_in_scene"] == 0
    (run / "run.json").write_text(json.dumps(old))

    plan = render(script, run, "--dry-run", "--json")
    assert [shot["action"] for shot in json.loads(plan.stdout)["shots"]] == ["keep", "keep"]
    monkeypatch.setattr(components, "load_model", lambda *a: pytest.fail("a kept story loads no model"))
    assert render(script, run).exit_code == 0
    record = json.loads((run / "run.json").read_text())
    assert record["format_version"] == 3 and record["shots"] == rendered["shots"]
    assert record["planned_shots"] == rendered["planned_shots"]


@pytest.mark.parametrize("version", [4, 0, "2", None])
def test_a_run_json_of_an_unknown_format_version_is_refused_clearly(tmp_path, version):
    script = write_script(tmp_path, "story.json", small_story("New", shots=1))
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"format": "storymem-run", "format_version": version,
                                              "story_name": "New", "shots": []}))  # fmt: skip
    result = render(script, run, "--dry-run")
    assert result.exit_code == 2
    assert f"has run format version {version}; this storymem reads versions 1 to 3" in result.stderr
    assert "--restart" in result.stderr and "Traceback" not in result.output


def test_upgrade_leaves_the_current_format_alone_and_tolerates_records_without_settings():
    current = {"format_version": 3, "settings": {"runtime": {"device": None}}}
    assert upgrade_record(current) is current
    assert upgrade_record({"format_version": 1, "shots": []}) == {"format_version": 3, "upgraded_from": 1, "shots": []}
    old = {"format_version": 1, "settings": {"model": "tiny", "device": "cpu", "cache": "none"}}
    assert upgrade_record(old)["settings"] == {"model": "tiny", "runtime": {"device": "cpu", "cache": "none"}}
