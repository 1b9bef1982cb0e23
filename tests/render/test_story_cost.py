"""Story time as it is (issue 31): shots grow with the memory, and the ETA and projections say so."""

from __future__ import annotations

import io

import pytest

from storymem_cli.render import story_cost
from storymem_cli.render.plan import ShotPlan
from storymem_cli.render.progress import PlainProgress


def test_memory_grows_by_three_keyframes_a_shot_up_to_ten():
    assert story_cost.memory_growth(6) == [0, 3, 6, 9, 10, 10]
    assert story_cost.memory_growth(3, capacity=10, per_shot=3, start=2) == [2, 5, 8]  # reference images first


def test_a14b_forward_and_the_paper_story():
    full = story_cost.shot_tokens(832, 480, 81, 10)
    assert full == 48_360 and story_cost.shot_tokens(832, 480, 81, 0) == 32_760
    parts = story_cost.forward_flops(full)
    assert sum(parts.values()) == pytest.approx(3.09e15, rel=0.01)  # the 3.09 PFLOP, 62% attention
    assert parts["attention"] / sum(parts.values()) == pytest.approx(0.62, abs=0.01)
    tokens = [story_cost.shot_tokens(832, 480, 81, m) for m in story_cost.memory_growth(10)]
    assert story_cost.story_factor(tokens, full) == pytest.approx(0.896, abs=0.002)


def test_eta_weights_the_shots_left_by_their_work():
    out = io.StringIO()
    progress = PlainProgress(out)
    progress.story_start("S", total_shots=3, kept_shots=0, steps=4, work=[1.0, 2.0, 2.0])
    progress.shot_done(ShotPlan(index=0, scene=1, shot_in_scene=0, prompt="p", mode="t2v", seed=0, cut=True), 10.0)
    assert out.getvalue().splitlines()[-1].endswith("ETA 0:00:40")  # 10 s per unit, 4 units left (not 20 s)


def test_time_summary_line():
    shots = [{"timings": {"total_s": 60.0, "denoise_s": 30.0}, "tokens": 100, "forwards": 80, "forwards_skipped": 24},
             {"timings": {"total_s": 60.0, "denoise_s": 30.0}, "tokens": 160, "forwards": 80, "forwards_skipped": 24}]
    assert story_cost.time_summary(shots) == ("2 shot(s) in 2.0 min, denoising 60.0 s, 100 to 160 tokens per "
                                              "forward, 48 of 160 expert forwards skipped")  # fmt: skip
