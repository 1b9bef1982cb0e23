"""--cache magcache and --magcache-calibrate through `storymem render` (issue 31)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from storymem_cli.cli.app import app

from .conftest import small_story, write_script


def _render(tmp_path, *options: str):
    script = write_script(tmp_path, "story.json", small_story("Calibrated", shots=2))
    return CliRunner().invoke(app, ["render", str(script), "-o", str(tmp_path / "run"), "--model", "tiny",
                                    "--device", "cpu", "--steps", "4", *options])  # fmt: skip


def test_calibration_render_writes_the_curves_and_records_each_shot(tmp_path):
    curves = tmp_path / "curves" / "wan.json"
    result = _render(tmp_path, "--magcache-calibrate", str(curves))
    assert result.exit_code == 0, result.output
    written = json.loads(curves.read_text())
    assert written["format"] == "storymem-magcache-curves/1"
    assert {kind: c["shots"] for kind, c in written["curves"].items()} == {"t2v": 1, "m2v": 1}  # a cut, then memory
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["model"]["cache"]["shots_calibrated"] == {"t2v": 1, "m2v": 1}
    for shot in record["shots"]:  # every render records the denoising alone and what a cache skipped
        assert shot["forwards"] == 8 and shot["forwards_skipped"] == 0 and shot["timings"]["denoise_s"] > 0


def test_calibrating_with_a_cache_on_is_refused(tmp_path):
    result = _render(tmp_path, "--cache", "magcache", "--magcache-calibrate", str(tmp_path / "c.json"))
    assert result.exit_code == 2 and "--magcache-calibrate" in result.output


def test_a_curve_file_that_is_not_one_is_refused_before_loading(tmp_path):
    bad = tmp_path / "notes.json"
    bad.write_text("[1, 2, 3]")
    result = _render(tmp_path, "--cache", "magcache", "--magcache-curve", str(bad))
    assert result.exit_code == 2 and "notes.json" in result.output
