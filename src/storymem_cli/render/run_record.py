"""What a run.json must hold to be trusted (docs/run-folder.md, "What is checked when a file is read").

run.json is ours: a value of the wrong type is damage, not a different layout. The least
destructive way out follows the run-folder rules: a shot record that cannot be trusted is
rendered again from that shot (the shots before it are kept); a damaged top level (the story,
the settings, the shot list itself) gives no shot to trust, so it is refused and ``--restart``
renders the story again in the folder.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from storymem_cli.config import PlanMode
from storymem_cli.jsonio import JsonFileError, json_path, validation_problem

RESTART_HINT = "pass --restart to render this story from scratch in this folder"


class _Open(BaseModel):
    # Fields this storymem does not know (added by a later one, or by the user) pass through.
    model_config = ConfigDict(extra="allow")


class ShotRecord(_Open):
    """One finished shot (the fields a render keeps shots by, and eval and the preview read)."""

    index: int = Field(ge=0)
    shot: int = Field(ge=1)  # index + 1: the number people read (run format 3)
    scene: int
    shot_in_scene: int = Field(ge=1)  # counted from 1 (run format 3; older records are upgraded on read)
    prompt: str
    mode: PlanMode
    seed: int = Field(ge=0)
    frames: int = Field(ge=1)
    trimmed_frames: int = Field(ge=1)
    path: str = Field(pattern=r"^shots/shot_\d{3,}\.mp4$")
    tail: str = Field(pattern=r"^shots/shot_\d{3,}\.tail\.npz$")
    clip_sha256: str | None = None
    tail_sha256: str | None = None
    memory_ids: list[str] = Field(default_factory=list)
    keyframe_ids: list[str] = Field(default_factory=list)
    fingerprint: str
    status: Literal["done"]


class RunTopLevel(_Open):
    format: Literal["storymem-run"]
    format_version: int
    story_name: str
    status: Literal["rendering", "done"] = "rendering"
    settings: dict[str, Any] = Field(default_factory=dict)
    shots: list[Any] = Field(default_factory=list)


def first_damaged_shot(path: Any, record: Any) -> tuple[int, str] | None:
    """(index, why) of the first shot record that cannot be trusted, or None; raises
    :class:`JsonFileError` for a damaged top level."""
    try:
        RunTopLevel.model_validate(record)
    except ValidationError as err:
        where, message = validation_problem(err)
        raise JsonFileError(path, message, where=where, hint=RESTART_HINT) from None
    shots = record.get("shots", [])
    for i, shot in enumerate(shots):
        try:
            ShotRecord.model_validate(shot)
            if shot["index"] != i:
                raise ValueError(f"index is {shot['index']}, not {i}")
            if shot["shot"] != i + 1:
                raise ValueError(f"shot is {shot['shot']}, not {i + 1}")
        except (ValidationError, ValueError) as err:
            where, message = validation_problem(err) if isinstance(err, ValidationError) else ("index", str(err))
            reason = f"run.json {json_path(('shots', i))}{'.' + where if where else ''}: {message}"
            return i, reason
    return None
