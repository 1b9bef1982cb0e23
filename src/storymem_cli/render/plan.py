"""The plan: which mode, seed and conditioning each shot gets, before any model loads.

Shot modes (SPEC 6): the first shot is T2V, or M2V from the reference images
when the story has any (MR2V). A hard cut is M2V (memory only). A shot with
``cut: false`` continues the previous one: MI2V (its last frame, the paper),
MM2V (its last 5 frames, the second LoRA) or, with ``--continuation none``,
a plain cut. With ``--no-memory`` (the ablation) every cut is T2V.

Trimming (SPEC 2): an MI2V shot's first frame repeats the previous shot's last
frame and an MM2V shot's first 5 frames repeat its last 5, so the renderer
drops them and the story joins without duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from storymem_cli.config import MOTION_FRAMES_MM2V, ContinuationMode, PlanMode, ShotMode
from storymem_cli.render.seeds import shot_seed

# How many of the previous shot's last frames condition a shot (= frames it repeats).
CONDITIONING_FRAMES: dict[str, int] = {"t2v": 0, "m2v": 0, "mr2v": 0, "mi2v": 1, "mm2v": MOTION_FRAMES_MM2V}
TAIL_FRAMES = max(CONDITIONING_FRAMES.values())  # frames kept losslessly per shot for the next one


class _ShotLike(Protocol):
    index: int
    scene: int
    index_in_scene: int
    prompt: str
    cut: bool
    seed: int | None


@dataclass(frozen=True)
class ShotPlan:
    index: int  # 0-based, across scenes (script.shots order)
    scene: int  # scene_num from the script
    shot_in_scene: int  # 1-based within the scene, as people count (run.json format 3)
    prompt: str
    mode: PlanMode
    seed: int
    cut: bool

    @property
    def number(self) -> int:
        """1-based global shot number, as in file names and messages."""
        return self.index + 1

    @property
    def generation_mode(self) -> ShotMode:
        """The pipeline's mode: MR2V is M2V from the reference images."""
        return "m2v" if self.mode == "mr2v" else self.mode

    @property
    def conditioning_frames(self) -> int:
        return CONDITIONING_FRAMES[self.mode]

    def as_dict(self) -> dict[str, Any]:
        """The plan as run.json records it: ``index`` 0-based, ``shot`` and ``shot_in_scene`` 1-based."""
        return {"index": self.index, "shot": self.number, **{k: v for k, v in asdict(self).items() if k != "index"}}


def shot_mode(
    index: int, cut: bool, *, has_references: bool, continuation: ContinuationMode, use_memory: bool
) -> PlanMode:
    """The mode of one shot (SPEC 6)."""
    if index > 0 and not cut and continuation != "none":
        return continuation  # "mi2v" or "mm2v"
    if not use_memory:
        return "t2v"
    if index == 0:
        return "mr2v" if has_references else "t2v"  # MR2V: the references are m_0
    return "m2v"


def plan_story(
    shots: Sequence[_ShotLike],
    *,
    has_references: bool,
    continuation: ContinuationMode,
    use_memory: bool,
    base_seed: int,
) -> list[ShotPlan]:
    """Mode and seed of every shot, in order."""
    return [
        ShotPlan(
            index=shot.index,
            scene=shot.scene,
            shot_in_scene=shot.index_in_scene + 1,
            prompt=shot.prompt,
            mode=shot_mode(
                shot.index, shot.cut, has_references=has_references, continuation=continuation, use_memory=use_memory
            ),
            seed=shot_seed(base_seed, shot.index, shot.seed),
            cut=shot.cut,
        )
        for shot in shots
    ]


def trim_frames(frames: np.ndarray, mode: PlanMode) -> np.ndarray:
    """Drop the leading frames that repeat the previous shot (MI2V: 1, MM2V: 5)."""
    drop = CONDITIONING_FRAMES[mode]
    if drop >= len(frames):
        raise ValueError(f"a {mode} shot of {len(frames)} frames has nothing left after dropping {drop}")
    return frames[drop:]


def first_frames_for(mode: PlanMode, previous_tail: np.ndarray | None) -> list[np.ndarray]:
    """The frames a shot starts from: the previous shot's last 1 (MI2V) or 5 (MM2V), else none."""
    count = CONDITIONING_FRAMES[mode]
    if count == 0:
        return []
    if previous_tail is None or len(previous_tail) < count:
        have = 0 if previous_tail is None else len(previous_tail)
        raise ValueError(f"a {mode} shot needs the previous shot's last {count} frames, have {have}")
    return [np.ascontiguousarray(frame) for frame in previous_tail[-count:]]


def min_frames_for(plans: Sequence[ShotPlan]) -> int:
    """Fewest frames a shot may have so that every planned shot keeps at least one after trimming."""
    return max((plan.conditioning_frames for plan in plans), default=0) + 1
