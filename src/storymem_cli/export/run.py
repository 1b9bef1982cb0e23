"""What an export reads from a run folder: the finished shots, checked as a resume checks them.

A timeline that points at clips the next render would replace is worse than none, so a run whose
files or memory fail issue 22's checks (render/integrity.py) is refused with the command that
repairs it. A run that is still rendering, or was stopped, exports its finished shots.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storymem_cli.errors import InvalidInputError
from storymem_cli.render.integrity import file_sha256, first_untrusted_shot
from storymem_cli.render.runfolder import RunFolder


@dataclass(frozen=True)
class ExportShot:
    """One finished shot, numbered for people (1-based) as in file names and messages."""

    number: int  # 1-based across scenes: shots/shot_001.mp4 is shot 1
    scene: int  # the script's scene_num
    shot_in_scene: int  # 1-based within the scene
    mode: str  # t2v, m2v, mr2v, mi2v, mm2v
    seed: int
    prompt: str
    frames: int  # in the clip (trimmed)
    clip: Path  # absolute


@dataclass(frozen=True)
class ExportRun:
    root: Path
    story_name: str
    fps: int
    shots: list[ExportShot]
    planned: int  # shots in the plan: more than len(shots) while the run is unfinished
    finished: bool  # story.mp4 written (status "done")

    @property
    def partial(self) -> bool:
        return not self.finished or len(self.shots) < self.planned


def _shot(root: Path, record: dict[str, Any]) -> ExportShot:
    return ExportShot(
        number=record["index"] + 1,
        scene=record["scene"],
        shot_in_scene=record["shot_in_scene"],  # 1-based since run format 3 (read_record upgrades older ones)
        mode=record["mode"],
        seed=record["seed"],
        prompt=record["prompt"],
        frames=record["trimmed_frames"],
        clip=(root / record["path"]).resolve(),
    )


def read_run(run_dir: Path) -> ExportRun:
    """The run's finished shots; refuses a folder without a run, or one that is damaged."""
    from storymem_cli.memory.bank import MEMORY_JSON, MemoryBank

    folder = RunFolder(run_dir)
    if not run_dir.is_dir():
        raise InvalidInputError(f"{run_dir}: no such folder", hint="pass a run folder written by `storymem render`")
    record = folder.read_record()
    if record is None:
        raise InvalidInputError(f"{run_dir}: no run.json here", hint="pass a run folder written by `storymem render`")
    shots = [shot for shot in record.get("shots", []) if shot.get("status") == "done"]
    if not shots:
        raise InvalidInputError(
            f"{run_dir}: no finished shot to export yet",
            hint=f"render the story first: storymem render {record.get('script_path', 'SCRIPT')} -o {run_dir}",
        )
    repair = f"run `storymem render {record.get('script_path', 'SCRIPT')} -o {run_dir}` again: it renders the damaged shots again"
    # Reading the bank must not create one: MemoryBank.open writes an empty memory.json when absent.
    bank = MemoryBank.open(run_dir) if (run_dir / MEMORY_JSON).is_file() else None
    untrusted = first_untrusted_shot(run_dir, shots, bank)
    if untrusted is not None:
        raise InvalidInputError(f"{run_dir}: shot {untrusted.shot + 1} is damaged: {untrusted.reason}", hint=repair)
    finished = record.get("status") == "done"
    if finished and record.get("video_sha256"):
        video = folder.story_mp4
        if not video.is_file() or file_sha256(video) != record["video_sha256"]:
            raise InvalidInputError(f"{video} is not the story.mp4 this run joined", hint=repair)
    return ExportRun(
        root=run_dir,
        story_name=record["story_name"],
        fps=record["settings"]["video"]["fps"],
        shots=[_shot(run_dir, shot) for shot in shots],
        planned=len(record.get("planned_shots") or shots),
        finished=finished,
    )
