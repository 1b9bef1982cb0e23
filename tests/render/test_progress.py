"""Progress displays: rich bars on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

from rich.console import Console

from storymem_cli.render.plan import ShotPlan
from storymem_cli.render.progress import PlainProgress, RichProgress, make_progress

PLAN = ShotPlan(index=1, scene=1, shot_in_scene=1, prompt="p", mode="mi2v", seed=1, cut=False)


def drive(progress) -> None:
    progress.story_start("Story", total_shots=3, kept_shots=1, steps=4)
    progress.shot_start(PLAN)
    for step in range(1, 5):
        progress.step(step, 4)
    progress.shot_done(PLAN, 2.0)
    progress.close()


def test_plain_lines_with_eta():
    out = io.StringIO()
    drive(PlainProgress(out))
    lines = out.getvalue().splitlines()
    assert lines[0] == "Story: 3 shots, 1 kept from the last run, 4 steps each"
    assert lines[1] == "Story: shot 2/3 (scene 1, mi2v, seed 1) ..."
    assert lines[2] == "Story: shot 2/3 done in 2.0 s, ETA 0:00:02"  # one shot left at 2 s each


def test_rich_bars_on_a_terminal():
    out = io.StringIO()
    drive(RichProgress(Console(file=out, force_terminal=True, color_system=None, width=120)))
    text = out.getvalue()
    assert "Story" in text and "shot 2/3 (scene 1, mi2v, seed 1)" in text and "done in 2.0 s" in text


def test_plain_when_not_a_terminal():
    assert isinstance(make_progress(io.StringIO()), PlainProgress)
