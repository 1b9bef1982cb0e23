"""Shot modes, seeds, trimming and continuation frames: pure, no model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from storymem_cli.render.plan import (
    first_frames_for,
    min_frames_for,
    plan_story,
    shot_mode,
    trim_frames,
)
from storymem_cli.render.seeds import shot_seed


@dataclass
class FakeShot:
    index: int
    scene: int
    index_in_scene: int
    prompt: str
    cut: bool
    seed: int | None = None


def shots(cuts_per_scene: list[list[bool]], seeds: dict[int, int] | None = None) -> list[FakeShot]:
    out = []
    for scene_num, cuts in enumerate(cuts_per_scene, start=1):
        for j, cut in enumerate(cuts):
            i = len(out)
            out.append(FakeShot(i, scene_num, j, f"prompt {i}", cut, (seeds or {}).get(i)))
    return out


def modes(cuts, **kw):
    defaults = {"has_references": False, "continuation": "mi2v", "use_memory": True, "base_seed": 0}
    return [p.mode for p in plan_story(shots(cuts), **{**defaults, **kw})]


def test_first_shot_t2v_cuts_m2v_continuations_mi2v():
    assert modes([[True, False, True], [True, False]]) == ["t2v", "mi2v", "m2v", "m2v", "mi2v"]


def test_references_make_the_first_shot_mr2v_which_the_pipeline_runs_as_m2v():
    assert modes([[True, False]], has_references=True) == ["mr2v", "mi2v"]
    plan = plan_story(shots([[True]]), has_references=True, continuation="mi2v", use_memory=True, base_seed=0)[0]
    assert plan.generation_mode == "m2v" and plan.conditioning_frames == 0


def test_continuation_options():
    assert modes([[True, False]], continuation="mm2v") == ["t2v", "mm2v"]
    assert modes([[True, False]], continuation="none") == ["t2v", "m2v"]


def test_no_memory_makes_cuts_t2v_and_keeps_continuations():
    assert modes([[True, False, True]], use_memory=False, has_references=True) == ["t2v", "mi2v", "t2v"]


def test_a_first_shot_marked_continuation_is_still_a_cut():
    assert shot_mode(0, False, has_references=False, continuation="mi2v", use_memory=True) == "t2v"


def test_seeds_are_distinct_across_scenes_and_overrides_win():
    plans = plan_story(
        shots([[True, True, True], [True, True]], seeds={3: 777}),
        has_references=False,
        continuation="mi2v",
        use_memory=True,
        base_seed=100,
    )
    assert [p.seed for p in plans] == [100, 101, 102, 777, 104]
    assert plans[3].scene == 2 and plans[3].shot_in_scene == 1 and plans[3].number == 4  # people's numbers
    assert plans[4].as_dict()["shot"] == 5 and plans[4].as_dict()["index"] == 4 and plans[4].shot_in_scene == 2


def test_shot_seed_wraps_to_32_bits():
    assert shot_seed(2**32 - 1, 2) == 1
    assert shot_seed(5, 3, override=0) == 0


def test_trim_drops_the_repeated_frames():
    frames = np.arange(9, dtype=np.uint8).reshape(9, 1, 1, 1).repeat(3, axis=-1)
    assert trim_frames(frames, "t2v").shape[0] == 9
    assert trim_frames(frames, "m2v").shape[0] == 9
    assert trim_frames(frames, "mi2v")[0, 0, 0, 0] == 1
    assert trim_frames(frames, "mm2v")[0, 0, 0, 0] == 5
    with pytest.raises(ValueError):
        trim_frames(frames[:5], "mm2v")


def test_first_frames_come_from_the_previous_tail():
    tail = np.arange(5, dtype=np.uint8).reshape(5, 1, 1, 1).repeat(3, axis=-1)
    assert first_frames_for("t2v", tail) == []
    (last,) = first_frames_for("mi2v", tail)
    assert last[0, 0, 0] == 4
    assert [f[0, 0, 0] for f in first_frames_for("mm2v", tail)] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        first_frames_for("mi2v", None)


def test_min_frames_leaves_one_frame_after_trimming():
    plans = plan_story(
        shots([[True, False]]), has_references=False, continuation="mm2v", use_memory=True, base_seed=0
    )
    assert min_frames_for(plans) == 6
    assert min_frames_for(plans[:1]) == 1
