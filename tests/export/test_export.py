"""storymem export: every file is read back with the library that reads that format.

A toy run (the built-in toy model, 2 steps) of three shots over two scenes, one of them a
continuation; each test reads the exported files with OpenTimelineIO's adapters or ``srt`` and
checks clip count, durations to the frame (against ffmpeg's count of each clip), names, media
paths and the shot information.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import opentimelineio as otio
import pytest
import srt
from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.render.integrity import count_frames

runner = CliRunner()

STORY = {
    "story_name": "Export test",
    "scenes": [
        {"scene_num": 1, "video_prompts": ["a red circle with a hat hops to the left on the beach",
                                           "the hero hops to the right on the beach"], "cut": [True, False]},
        {"scene_num": 3, "video_prompts": ["the hero turns around in the snow"], "cut": [True]},
    ],
}  # fmt: skip
# (shot, scene, shot in scene, mode, seed) of the three shots, people's numbers.
SHOTS = [(1, 1, 1, "t2v", 0), (2, 1, 2, "mi2v", 1), (3, 3, 1, "m2v", 2)]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("export")
    script = root / "story.json"
    script.write_text(json.dumps(STORY), encoding="utf-8")
    run = root / "run"
    result = runner.invoke(app, ["render", str(script), "-o", str(run), "--model", "toy", "--steps", "1",
                                 "--frames", "5", "--device", "cpu", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((run / "run.json").read_text())
    return {"run": run, "record": record, "fps": record["settings"]["video"]["fps"],
            "frames": [count_frames(run / shot["path"]) for shot in record["shots"]]}  # fmt: skip


@pytest.fixture
def run_copy(toy_run, tmp_path) -> Path:
    """A copy of the toy run to change or write into (the module's run stays as rendered)."""
    return Path(shutil.copytree(toy_run["run"], tmp_path / "run"))


def export(*args: str):
    return runner.invoke(app, ["export", *args])


def frames_of(duration: otio.opentime.RationalTime, fps: int) -> float:
    return duration.rescaled_to(fps).value


def clip_path(url: str, timeline_file: Path) -> Path:
    """Where a media reference points: a file:// URL, or a path relative to the timeline's folder."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return (timeline_file.parent / url).resolve()


def check_timeline(timeline, path: Path, toy_run: dict) -> None:
    """Clip count, durations to the frame, names, media paths and markers of an exported timeline."""
    clips = list(timeline.find_clips())
    record, fps = toy_run["record"], toy_run["fps"]
    assert len(clips) == len(SHOTS) == len(timeline.tracks) * len(SHOTS)  # one track
    start = 0
    for clip, (shot, scene, in_scene, mode, seed), frames, shot_record in zip(clips, SHOTS, toy_run["frames"], record["shots"]):
        assert clip.name == f"shot {shot:03d} (scene {scene}.{in_scene}, {mode})"
        assert frames_of(clip.source_range.duration, fps) == frames == shot_record["trimmed_frames"]
        assert frames_of(clip.source_range.start_time, fps) == 0
        assert frames_of(clip.range_in_parent().start_time, fps) == start  # cuts where story.mp4 has them
        start += frames
        target = clip_path(clip.media_reference.target_url, path)
        assert target == (toy_run["run"] / shot_record["path"]).resolve() and target.is_file()
        assert [marker.name.lower() for marker in clip.markers] == [f"shot {shot}, scene {scene}.{in_scene}, {mode}, seed {seed}"]


def test_all_four_formats_read_back_with_their_libraries(toy_run, run_copy, tmp_path):
    result = export(str(run_copy), "--json")
    assert result.exit_code == 0, result.output
    written = {item["format"]: Path(item["path"]) for item in json.loads(result.stdout)["files"]}
    assert written == {"otio": run_copy / "timeline.otio", "edl": run_copy / "timeline.edl",
                       "fcpxml": run_copy / "timeline.xml", "srt": run_copy / "story.srt"}  # fmt: skip
    info = {**toy_run, "run": run_copy}

    timeline = otio.adapters.read_from_file(str(written["otio"]))
    check_timeline(timeline, written["otio"], info)
    assert all(not Path(c.media_reference.target_url).is_absolute() for c in timeline.find_clips())  # relative
    for clip, (shot, scene, in_scene, mode, seed), prompt in zip(timeline.find_clips(), SHOTS, [
        p for s in STORY["scenes"] for p in s["video_prompts"]
    ]):
        assert clip.metadata["storymem"] == {"shot": shot, "scene": scene, "shot_in_scene": in_scene, "mode": mode,
                                             "seed": seed, "prompt": prompt, "frames": clip.metadata["storymem"]["frames"]}  # fmt: skip
    assert timeline.global_start_time.rate == toy_run["fps"]  # the run's own rate

    edl = otio.adapters.read_from_file(str(written["edl"]), rate=48)  # 16 fps has no timecode: 3 per frame
    check_timeline(edl, written["edl"], info)
    assert "* PROMPT: the hero turns around in the snow" in written["edl"].read_text()

    xml = otio.adapters.read_from_file(str(written["fcpxml"]))
    check_timeline(xml, written["fcpxml"], info)
    assert [clip.markers[0].metadata["fcp_xml"]["comment"] for clip in xml.find_clips()] == [
        p for s in STORY["scenes"] for p in s["video_prompts"]
    ]

    subtitles = list(srt.parse(written["srt"].read_text(encoding="utf-8")))
    assert len(subtitles) == len(SHOTS)
    start = 0
    for subtitle, frames, (shot, scene, in_scene, mode, _), prompt in zip(
        subtitles, toy_run["frames"], SHOTS, [p for s in STORY["scenes"] for p in s["video_prompts"]]
    ):
        fps = toy_run["fps"]
        assert round(subtitle.start.total_seconds() * fps) == start  # SRT keeps milliseconds: to the frame
        assert round(subtitle.end.total_seconds() * fps) == start + frames
        assert subtitle.content == f"shot {shot} (scene {scene}.{in_scene}, {mode})\n{prompt}"
        start += frames
    assert start == count_frames(run_copy / "story.mp4")  # the subtitles end with story.mp4


@pytest.mark.parametrize(("fmt", "adapter", "kwargs"), [("edl", "cmx_3600", {"rate": 48}), ("fcpxml", "fcp_xml", {})])
def test_edl_and_fcp_xml_round_trip_through_otio(toy_run, tmp_path, fmt, adapter, kwargs):
    out = tmp_path / f"cut.{fmt}"
    result = export(str(toy_run["run"]), "--format", fmt, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    first = otio.adapters.read_from_file(str(out), adapter_name=adapter, **kwargs)
    again = otio.adapters.read_from_string(
        otio.adapters.write_to_string(first, adapter_name=adapter), adapter_name=adapter, **kwargs
    )

    def cut(timeline):
        return [(c.name, c.source_range, c.media_reference.target_url, [m.name for m in c.markers])
                for c in timeline.find_clips()]  # fmt: skip

    assert cut(again) == cut(first)
    check_timeline(again, out, toy_run)  # written outside the run folder: paths still reach the clips


def test_a_partial_run_exports_its_finished_shots_with_a_warning(toy_run, run_copy):
    record = json.loads((run_copy / "run.json").read_text())
    record["shots"], record["status"] = record["shots"][:2], "rendering"  # stopped during shot 3
    (run_copy / "run.json").write_text(json.dumps(record))
    result = export(str(run_copy), "--format", "otio", "--format", "srt", "--json")
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "2 of 3 shots done" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["partial"] and summary["shots"] == 2 and summary["planned_shots"] == 3
    assert len(list(otio.adapters.read_from_file(str(run_copy / "timeline.otio")).find_clips())) == 2
    assert len(list(srt.parse((run_copy / "story.srt").read_text()))) == 2
    assert not (run_copy / "timeline.edl").exists()  # only the formats asked for


def test_a_damaged_run_is_refused_and_nothing_is_written(run_copy):
    clip = run_copy / "shots" / "shot_002.mp4"
    clip.write_bytes(clip.read_bytes()[:-100])  # truncated
    result = export(str(run_copy))
    assert result.exit_code == 2
    assert "shot 2 is damaged" in result.stderr and "storymem render" in result.stderr
    assert not any((run_copy / name).exists() for name in ("timeline.otio", "timeline.edl", "timeline.xml", "story.srt"))


def test_not_a_run_folder_is_invalid_input(tmp_path):
    result = export(str(tmp_path))
    assert result.exit_code == 2 and "no run.json" in result.stderr


def test_output_names_for_several_formats(toy_run, tmp_path):
    folder = tmp_path / "cuts"
    folder.mkdir()
    result = export(str(toy_run["run"]), "-f", "otio", "-f", "srt", "-o", str(folder))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == ["story.srt", "timeline.otio"]
    result = export(str(toy_run["run"]), "-f", "edl", "-f", "fcpxml", "-o", str(tmp_path / "story"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "story.edl").is_file() and (tmp_path / "story.xml").is_file()
