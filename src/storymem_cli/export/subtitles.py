"""The shot prompts as SRT subtitles, timed to the shots in story.mp4 (the clips joined in order)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from storymem_cli.export.run import ExportRun, ExportShot


def subtitle_text(shot: ExportShot) -> str:
    return f"shot {shot.number} (scene {shot.scene}.{shot.shot_in_scene}, {shot.mode})\n{shot.prompt}"


def srt_text(run: ExportRun, path: Path | None = None) -> str:
    """SRT text (``path``, where it will be written, is not needed: subtitles name no files)."""
    import srt

    subtitles, start = [], 0
    for shot in run.shots:
        end = start + shot.frames
        subtitles.append(
            srt.Subtitle(
                index=shot.number,
                start=timedelta(seconds=start / run.fps),
                end=timedelta(seconds=end / run.fps),
                content=subtitle_text(shot),
            )
        )
        start = end
    return srt.compose(subtitles, reindex=False)
