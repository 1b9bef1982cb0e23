"""Presenting results: rich tables, JSON, CSV, a bar chart, and the paper's Table 1."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from storymem_cli.errors import InvalidInputError
from storymem_cli.jsonio import load_json
from storymem_cli.eval.evaluate import StoryResult
from storymem_cli.eval.metrics import METRICS, mean_over_stories

# Two-line headers keep the table inside an 80-column terminal.
HEADERS = {
    "aesthetic": "aesthetic\nquality",
    "prompt_global": "prompt\nglobal",
    "prompt_single": "prompt\nsingle",
    "consistency_all": "consistency\nall pairs",
    "consistency_top10": "consistency\ntop-10",
}
TINY_WARNING = (
    "RANDOM-WEIGHT TINY METRIC MODELS (--models tiny): these numbers exercise the pipeline "
    "and mean nothing; do not compare them with anything"
)


@dataclass
class SystemSummary:
    """Mean of each metric over a system's stories (stories without a value are left out)."""

    system: str
    stories: int
    means: dict[str, float | None]
    source: str = "evaluated"  # "evaluated", "paper", or the results file it was read from

    def to_json(self) -> dict:
        return {"system": self.system, "stories": self.stories, "source": self.source, **self.means}


def summarise(results: list[StoryResult]) -> list[SystemSummary]:
    """One summary per system, in first-seen order."""
    systems: dict[str, list[StoryResult]] = {}
    for r in results:
        systems.setdefault(r.system, []).append(r)
    return [
        SystemSummary(name, len(rs), {m: mean_over_stories([r.scores.get(m) for r in rs]) for m in METRICS})
        for name, rs in systems.items()
    ]


def paper_rows() -> list[SystemSummary]:
    """The paper's Table 1, shipped as package data."""
    data = json.loads(resources.files("storymem_cli.data").joinpath("paper_table1.json").read_text(encoding="utf-8"))
    return [
        SystemSummary(f"paper: {row['system']}", 30, {m: row[m] for m in METRICS}, source="paper")  # ST-Bench: 30 stories
        for row in data["rows"]
    ]


def results_from_json(path: Path) -> list[StoryResult]:
    """Stories from a file written by `storymem eval --json` (to compare without re-running)."""
    hint = "save one with `storymem eval RUN_DIR --json > results.json`, or pass a run folder"
    data = load_json(path, hint=hint)
    try:
        stories = data["stories"]
        return [
            StoryResult(
                story=entry["story"], system=entry["system"], shots=entry.get("shots", 0),
                scores={m: entry.get(m) for m in METRICS}, notes=list(entry.get("notes", [])),
            )
            for entry in stories
        ]
    except (KeyError, TypeError, AttributeError) as err:
        raise InvalidInputError(
            f"--compare {path}: not a results file of `storymem eval --json` ({type(err).__name__}: {err})", hint=hint
        ) from None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def story_table(results: list[StoryResult], summary: SystemSummary, metrics: list[str], tiny: bool):
    """Rich table: one row per story of a system, then the mean."""
    from rich import box
    from rich.table import Table

    title = f"{summary.system}: {summary.stories} stor{'y' if summary.stories == 1 else 'ies'}"
    table = Table(title=title + ("  [bold red](random tiny models)[/]" if tiny else ""), title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("story")
    table.add_column("shots", justify="right")
    for m in metrics:
        table.add_column(HEADERS[m], justify="right", no_wrap=True)
    for r in results:
        table.add_row(r.story, str(r.shots), *(_fmt(r.scores.get(m)) for m in metrics))
    table.add_section()
    table.add_row("[bold]mean[/]", "", *(f"[bold]{_fmt(summary.means[m])}[/]" for m in metrics))
    return table


def compare_table(summaries: list[SystemSummary], metrics: list[str], tiny: bool):
    """Rich table: one row per system (means), paper rows included."""
    from rich import box
    from rich.table import Table

    title = "side by side (means over stories)" + ("  [bold red](ours: random tiny models)[/]" if tiny else "")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("system")
    table.add_column("n", justify="right")
    for m in metrics:
        table.add_column(HEADERS[m], justify="right", no_wrap=True)
    for s in summaries:
        style = "dim" if s.source == "paper" else None
        table.add_row(s.system, str(s.stories), *(_fmt(s.means[m]) for m in metrics), style=style)
    return table


def to_json(results: list[StoryResult], summaries: list[SystemSummary], models: dict) -> str:
    return json.dumps(
        {
            "models": models,
            "stories": [r.to_json() for r in results],
            "systems": [s.to_json() for s in summaries],
        },
        indent=2,
    )


def to_csv(results: list[StoryResult], summaries: list[SystemSummary]) -> str:
    """One row per story, then one per system mean (story = "mean") and paper row (story = "paper")."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["system", "story", *METRICS, "shots", "notes"])
    for r in results:
        writer.writerow([r.system, r.story, *("" if r.scores.get(m) is None else f"{r.scores[m]:.6f}" for m in METRICS), r.shots, " | ".join(r.notes)])
    for s in summaries:
        writer.writerow([s.system, "paper" if s.source == "paper" else "mean", *("" if s.means[m] is None else f"{s.means[m]:.6f}" for m in METRICS), "", ""])
    return buf.getvalue()


def plot(summaries: list[SystemSummary], metrics: list[str], path: Path, tiny: bool) -> None:
    """Grouped bar chart: one group per metric, one bar per system (PNG)."""
    import matplotlib.pyplot as plt

    fig = plot_figure(summaries, metrics, tiny)
    fig.savefig(path, format="png")
    plt.close(fig)


def plot_figure(summaries: list[SystemSummary], metrics: list[str], tiny: bool):  # -> matplotlib Figure
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(metrics))
    width = 0.8 / max(1, len(summaries))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(metrics) + 0.4 * len(summaries)), 4.0), dpi=120)
    for k, s in enumerate(summaries):
        values = [np.nan if s.means[m] is None else s.means[m] for m in metrics]
        ax.bar(x + (k - (len(summaries) - 1) / 2) * width, values, width, label=s.system)
    ax.set_xticks(x, [HEADERS[m] for m in metrics])  # two lines each: "consistency / all pairs" side by side overlap
    ax.set_ylabel("score (higher is better)")
    ax.set_title("ST-Bench metrics" + ("  (RANDOM TINY MODELS: meaningless)" if tiny else ""), color="red" if tiny else "black")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig
