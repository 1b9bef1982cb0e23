"""Every script and option of a render, checked before torch is imported or anything loads.

A missing or invalid script, a ``--size`` or ``--frames`` the model cannot take and (for one
story) a folder another render is writing cost a second here, not half a minute of imports and model loading
first. The render checks the same things again when it runs (story.check_inputs, the folder's
lock): this is only the early answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

from storymem_cli.errors import InvalidInputError, StorymemError
from storymem_cli.render.batch import Failure, StoryJob
from storymem_cli.render.runfolder import RunFolder
from storymem_cli.render.session import load_story
from storymem_cli.render.settings import RenderOptions
from storymem_cli.render.style_args import check_style_lora_file
from storymem_cli.render.story import check_inputs, check_video, plan_for


def _settings_without_torch(options: RenderOptions):  # -> RenderSettings | None
    """The settings when the model is known without torch; None for ``--model auto`` (it asks torch
    whether there is a GPU) and for an explicit ``--dtype`` without ``--device`` (likewise)."""
    from storymem_cli.render.runtime import resolve_model, settings_for

    if options.model == "auto" or (options.runtime.dtype != "auto" and options.runtime.device is None):
        return None
    return settings_for(resolve_model(options.model), options)


def check_options(options: RenderOptions) -> None:
    """What can be checked of the user's own --size and --frames whatever the model."""
    if options.width is not None and options.height is not None:
        check_video(SimpleNamespace(width=options.width, height=options.height, frames=1))
    if options.frames is not None:
        check_video(SimpleNamespace(width=0, height=0, frames=options.frames))


def check_run_dir(job: StoryJob) -> None:
    """The folder a script renders into, named after the script without -o (or under -o in a batch),
    gets the checks -o gets: ffmpeg joins the shots at the end, and cannot with a line break in the path."""
    from storymem_cli.cli.paths import check_output_path

    if job.script.stem in ("", ".", ".."):
        raise InvalidInputError(
            f"{job.script}: the file name gives no name for its run folder (it would render into {job.run_dir} itself)",
            hint="rename the script, e.g. story.json",
        )
    check_output_path(job.run_dir, f"run folder of {job.script.name!r} (named after the script; -o chooses another)", folder=True)


def check_job(job: StoryJob, settings, *, check_lock: bool) -> None:
    check_run_dir(job)
    inputs, _ = load_story(job.script)  # its warnings are printed when the story renders
    if settings is not None:
        check_inputs(job.script, settings, plan_for(inputs.script, settings))
    if check_lock and job.run_dir.is_dir():
        try:
            with RunFolder(job.run_dir).locked():  # refuses now if another render holds it
                pass
        except OSError:  # an unwritable folder: the render itself says so, with its hint
            pass


def preflight(
    jobs: Sequence[StoryJob], options: RenderOptions, *, batch: bool, writes: bool
) -> tuple[list[StoryJob], list[Failure]]:
    """Check everything before anything heavy. One story: its error is raised. A batch: the stories
    that fail are returned as failures and the rest go on, as when a story fails while rendering."""
    check_options(options)
    for style in options.style_loras:  # before any script: the same files for every story
        check_style_lora_file(style)
    settings = _settings_without_torch(options)
    good: list[StoryJob] = []
    failures: list[Failure] = []
    for job in jobs:
        try:
            # A batch meets a busy folder when it gets there (another process may finish first).
            check_job(job, settings, check_lock=writes and not batch)
        except StorymemError as err:
            if not batch:
                raise
            failures.append(Failure(job.script, str(err), err.exit_code))
        else:
            good.append(job)
    return good, failures
