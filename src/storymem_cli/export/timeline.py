"""The run's shots as one OpenTimelineIO track, and its writers: OTIO JSON, CMX 3600 EDL, FCP 7 XML.

One clip per finished shot, in story order, each with its name, its source range (the whole
clip), a marker "shot N, scene S.K, MODE, seed X" and the prompt: in the clip's ``storymem``
metadata (OTIO), as an EDL comment line (``* PROMPT: ...``) and as the marker's comment (FCP XML).

Frame rates: OTIO keeps the run's own (16 for Wan2.2). EDL and FCP XML carry SMPTE timecode,
which has no 16 fps: they count in the smallest timecode rate that is a whole multiple of the
run's (16 -> 48: every shot frame is exactly 3 timecode frames), so no cut moves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from storymem_cli.errors import InvalidInputError
from storymem_cli.export.run import ExportRun, ExportShot

TIMECODE_RATES = (24, 25, 30, 48, 50, 60)  # the whole-number rates SMPTE timecode has
NAMESPACE = "storymem"


def clip_name(shot: ExportShot) -> str:
    return f"shot {shot.number:03d} (scene {shot.scene}.{shot.shot_in_scene}, {shot.mode})"


def marker_name(shot: ExportShot) -> str:
    return f"shot {shot.number}, scene {shot.scene}.{shot.shot_in_scene}, {shot.mode}, seed {shot.seed}"


def timecode_rate(fps: int) -> int:
    """The smallest SMPTE timecode rate that counts every frame of ``fps`` exactly."""
    for rate in TIMECODE_RATES:
        if rate % fps == 0:
            return rate
    raise InvalidInputError(
        f"{fps} fps has no SMPTE timecode rate that is a whole multiple of it ({', '.join(map(str, TIMECODE_RATES))})",
        hint="export --format otio or srt, which keep any frame rate",
    )


def build_timeline(run: ExportRun, media_url: Any, rate: int | None = None) -> Any:
    """An ``otio.schema.Timeline`` of the run's shots. ``media_url(shot)`` gives each clip's media
    reference; ``rate`` counts time in another rate than the run's fps (a whole multiple of it)."""
    import opentimelineio as otio

    fps = run.fps
    rate = rate or fps

    def span(start: int, frames: int) -> Any:  # frames of the run's fps, counted at `rate`
        return otio.opentime.TimeRange(
            otio.opentime.RationalTime(start, fps).rescaled_to(rate),
            otio.opentime.RationalTime(frames, fps).rescaled_to(rate),
        )

    timeline = otio.schema.Timeline(name=run.story_name, global_start_time=otio.opentime.RationalTime(0, rate))
    timeline.metadata[NAMESPACE] = {"run_dir": str(run.root), "fps": fps, "shots": len(run.shots), "planned_shots": run.planned}
    track = otio.schema.Track(name="shots", kind=otio.schema.TrackKind.Video)
    timeline.tracks.append(track)
    for shot in run.shots:
        whole = span(0, shot.frames)
        info = {"shot": shot.number, "scene": shot.scene, "shot_in_scene": shot.shot_in_scene, "mode": shot.mode,
                "seed": shot.seed, "prompt": shot.prompt, "frames": shot.frames}  # fmt: skip
        clip = otio.schema.Clip(
            name=clip_name(shot),
            media_reference=otio.schema.ExternalReference(target_url=media_url(shot), available_range=whole),
            source_range=whole,
            metadata={NAMESPACE: info, "cmx_3600": {"reel": f"SHOT{shot.number:03d}", "comments": [f"PROMPT: {shot.prompt}"]}},
        )
        clip.markers.append(
            otio.schema.Marker(
                name=marker_name(shot),
                marked_range=span(0, 1),
                metadata={NAMESPACE: info, "fcp_xml": {"comment": shot.prompt}},
            )
        )
        track.append(clip)
    return timeline


def relative_url(target: Path, written_to: Path) -> str:
    """``target`` relative to the folder of the file that names it (posix slashes), so the run
    folder can move with its timeline; absolute where no relative path exists (another drive)."""
    try:
        return Path(os.path.relpath(target, written_to.resolve().parent)).as_posix()
    except ValueError:
        return target.as_posix()


def otio_text(run: ExportRun, path: Path) -> str:
    """OTIO JSON for a file at ``path``: media paths relative to its folder, the run's fps."""
    import opentimelineio as otio

    timeline = build_timeline(run, lambda shot: relative_url(shot.clip, path))
    return otio.adapters.write_to_string(timeline, adapter_name="otio_json")


def edl_text(run: ExportRun, path: Path) -> str:
    """A CMX 3600 EDL for a file at ``path``: media paths (FROM CLIP comments) relative to its folder."""
    import opentimelineio as otio

    timeline = build_timeline(run, lambda shot: relative_url(shot.clip, path), rate=timecode_rate(run.fps))
    return otio.adapters.write_to_string(timeline, adapter_name="cmx_3600")


def fcp_xml_text(run: ExportRun, path: Path) -> str:
    """FCP 7 XML (xmeml: Premiere, DaVinci Resolve, Final Cut Pro 7): its pathurl is a URL, and
    editors resolve only absolute file:// ones."""
    import opentimelineio as otio

    timeline = build_timeline(run, lambda shot: shot.clip.as_uri(), rate=timecode_rate(run.fps))
    return otio.adapters.write_to_string(timeline, adapter_name="fcp_xml")
