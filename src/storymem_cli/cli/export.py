"""storymem export: a run folder as an editor's timeline (OTIO, EDL, FCP XML) and as subtitles (SRT)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer

from storymem_cli.cli.app import app
from storymem_cli.errors import InvalidInputError


class Format(str, Enum):
    otio = "otio"
    edl = "edl"
    fcpxml = "fcpxml"
    srt = "srt"


# Default file (in the run folder) per format. story.srt sits beside story.mp4, so video players
# load the subtitles with the video.
DEFAULT_NAMES = {Format.otio: "timeline.otio", Format.edl: "timeline.edl", Format.fcpxml: "timeline.xml",
                 Format.srt: "story.srt"}  # fmt: skip


def output_paths(run_dir: Path, formats: list[Format], output: Path | None) -> dict[Format, Path]:
    """Where each format goes: the default names in the run folder, or in the folder ``-o`` names;
    ``-o FILE`` with one format is that file, with several its stem with each format's suffix."""
    if output is None or output.is_dir() or str(output).endswith(("/", "\\")):
        folder = run_dir if output is None else output
        return {fmt: folder / DEFAULT_NAMES[fmt] for fmt in formats}
    if len(formats) == 1:
        return {formats[0]: output}
    return {fmt: output.with_suffix(Path(DEFAULT_NAMES[fmt]).suffix) for fmt in formats}


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="Run folder written by `storymem render`.", show_default=False),
    formats: list[Format] = typer.Option(
        [],
        "--format",
        "-f",
        help="otio (OpenTimelineIO), edl (CMX 3600), fcpxml (FCP 7 XML: Premiere, DaVinci Resolve) or srt "
        "(the prompts as subtitles of story.mp4); repeat for several. Default: all four.",
        show_default=False,
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="File to write (one format), a folder for the default names, or with several formats a path "
        "whose suffix each format replaces. Default: RUN_DIR/timeline.otio, timeline.edl, timeline.xml, story.srt.",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print what was written as JSON on stdout."),
) -> None:
    """Export a run as a timeline for an editor (DaVinci Resolve, Premiere, Kdenlive, ...): one track
    of the shot clips in story order, each named and marked with its scene, shot, mode, seed and
    prompt, and the prompts as subtitles timed to story.mp4.

    A run that is not finished exports its finished shots (with a warning); a damaged one (a clip
    or memory image that is not what the render wrote) is refused: render it again first.
    """
    from storymem_cli.cli.paths import check_output_path
    from storymem_cli.export.run import read_run
    from storymem_cli.export.subtitles import srt_text
    from storymem_cli.export.timeline import edl_text, fcp_xml_text, otio_text, timecode_rate
    from storymem_cli.render.atomic import atomic_write_text
    from storymem_cli.render.runfolder import raise_os_error

    formats = list(dict.fromkeys(formats)) or list(Format)
    if output is not None:
        check_output_path(output, "-o", folder=output.is_dir())
    paths = output_paths(run_dir, formats, output)
    if len(set(paths.values())) < len(paths):
        raise InvalidInputError(f"-o {output}: two formats would be written to the same file", hint="give a folder or a file name without a suffix")
    run = read_run(run_dir)
    if run.partial:
        typer.echo(
            f"warning: {run_dir}: the run is not finished ({len(run.shots)} of {run.planned} shots done): exporting "
            "the finished shots; render it again to finish, then export again",
            err=True,
        )
    writers = {Format.otio: otio_text, Format.edl: edl_text, Format.fcpxml: fcp_xml_text, Format.srt: srt_text}
    written = []
    for fmt, path in paths.items():
        text = writers[fmt](run, path)
        try:
            atomic_write_text(path, text)
        except OSError as err:
            raise_os_error(err, path)
        written.append({"format": fmt.value, "path": str(path), "clips": len(run.shots)})
        if fmt in (Format.edl, Format.fcpxml) and timecode_rate(run.fps) != run.fps:
            typer.echo(
                f"note: {path.name}: timecode at {timecode_rate(run.fps)} fps ({run.fps} fps has no SMPTE timecode): "
                f"each frame of the clips is {timecode_rate(run.fps) // run.fps} timecode frames",
                err=True,
            )
    if json_output:
        payload = {"run_dir": str(run_dir), "story": run.story_name, "fps": run.fps, "shots": len(run.shots),
                   "planned_shots": run.planned, "partial": run.partial, "files": written}  # fmt: skip
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    for item in written:
        typer.echo(item["path"])
