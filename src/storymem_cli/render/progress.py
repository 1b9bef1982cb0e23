"""Progress on stderr: a rich display on a terminal, one plain line per event otherwise.

The rich display has two bars: the story (shots, advancing with every
denoising step so its ETA is smooth) and the current shot (denoising steps).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, Protocol, TextIO

from storymem_cli.render.plan import ShotPlan


class RenderProgress(Protocol):
    # work: each shot's share of the story's denoising (render.story_cost), for the ETA; None: equal shares
    def story_start(self, story: str, total_shots: int, kept_shots: int, steps: int,
                    work: Sequence[float] | None = None) -> None: ...  # fmt: skip
    def shot_start(self, plan: ShotPlan) -> None: ...
    def step(self, step: int, total: int) -> None: ...
    def shot_done(self, plan: ShotPlan, seconds: float) -> None: ...
    def note(self, text: str) -> None: ...
    def close(self) -> None: ...


def _describe(plan: ShotPlan, total: int) -> str:
    return f"shot {plan.number}/{total} (scene {plan.scene}, {plan.mode}, seed {plan.seed})"


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class PlainProgress:
    """One line per event, for logs and pipes."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.story = ""
        self.total = 0
        self.remaining = 0
        self.elapsed: list[float] = []
        self.work: list[float] = []
        self.done_work: list[float] = []

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def story_start(self, story: str, total_shots: int, kept_shots: int, steps: int,
                    work: Sequence[float] | None = None) -> None:  # fmt: skip
        self.story, self.total, self.remaining, self.elapsed = story, total_shots, total_shots - kept_shots, []
        self.work, self.done_work = list(work) if work else [1.0] * total_shots, []
        kept = f", {kept_shots} kept from the last run" if kept_shots else ""
        shots = "1 shot" if total_shots == 1 else f"{total_shots} shots"
        self._line(f"{story}: {shots}{kept}, {steps} steps each")

    def shot_start(self, plan: ShotPlan) -> None:
        self._line(f"{self.story}: {_describe(plan, self.total)} ...")

    def step(self, step: int, total: int) -> None:
        return None  # a line per denoising step would drown the log

    def shot_done(self, plan: ShotPlan, seconds: float) -> None:
        from storymem_cli.render.story_cost import remaining_seconds

        self.elapsed.append(seconds)
        self.done_work.append(self.work[plan.index] if plan.index < len(self.work) else 1.0)
        self.remaining -= 1
        # Later shots carry more memory: seconds per unit of work so far, times the work left.
        eta = remaining_seconds(self.elapsed, self.done_work, self.work[len(self.work) - self.remaining :])
        self._line(f"{self.story}: shot {plan.number}/{self.total} done in {seconds:.1f} s, ETA {_clock(eta)}")

    def note(self, text: str) -> None:
        self._line(text)

    def close(self) -> None:
        return None


class RichProgress:
    """Live bars for a terminal."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = console or Console(stderr=True)
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.bars.start()
        self.story_task = None
        self.shot_task = None
        self.total = 0
        self.steps = 1
        self.finished = 0

    def story_start(self, story: str, total_shots: int, kept_shots: int, steps: int,
                    work: Sequence[float] | None = None) -> None:  # fmt: skip
        self.total, self.steps, self.finished = total_shots, steps, kept_shots
        if self.story_task is not None:
            self.bars.remove_task(self.story_task)
        kept = f" ({kept_shots} kept)" if kept_shots else ""
        self.story_task = self.bars.add_task(f"[bold]{story}[/] shots{kept}", total=total_shots, completed=kept_shots)

    def shot_start(self, plan: ShotPlan) -> None:
        if self.shot_task is not None:
            self.bars.remove_task(self.shot_task)
        self.shot_task = self.bars.add_task(f"  {_describe(plan, self.total)} steps", total=self.steps)

    def step(self, step: int, total: int) -> None:
        if self.shot_task is None or self.story_task is None:
            return
        self.bars.update(self.shot_task, completed=step, total=total)
        self.bars.advance(self.story_task, 1.0 / max(total, 1))

    def shot_done(self, plan: ShotPlan, seconds: float) -> None:
        if self.story_task is not None:
            # Snap to a whole shot: the steps advanced it by about 1 already.
            self.finished += 1
            self.bars.update(self.story_task, completed=self.finished)
        if self.shot_task is not None:
            self.bars.remove_task(self.shot_task)
            self.shot_task = None
        self.console.print(f"{_describe(plan, self.total)} done in {seconds:.1f} s")

    def note(self, text: str) -> None:
        self.console.print(text)

    def close(self) -> None:
        # A shot bar still up means the shot did not finish (Ctrl-C, an error): it must not stay on screen.
        if self.shot_task is not None:
            self.bars.remove_task(self.shot_task)
            self.shot_task = None
        self.bars.stop()


class NullProgress:
    def story_start(self, story: str, total_shots: int, kept_shots: int, steps: int,
                    work: Sequence[float] | None = None) -> None: ...  # fmt: skip
    def shot_start(self, plan: ShotPlan) -> None: ...
    def step(self, step: int, total: int) -> None: ...
    def shot_done(self, plan: ShotPlan, seconds: float) -> None: ...
    def note(self, text: str) -> None: ...
    def close(self) -> None: ...


def make_progress(stream: TextIO | None = None) -> RenderProgress:
    """Rich bars when stderr is a terminal, plain lines otherwise."""
    stream = stream or sys.stderr
    if stream.isatty():
        return RichProgress()
    return PlainProgress(stream)
