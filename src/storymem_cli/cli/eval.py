"""`storymem eval`: the ST-Bench metrics (paper Table 1) for our runs and anyone else's clips."""

from __future__ import annotations

from pathlib import Path

import typer

from storymem_cli.cli.app import app
from storymem_cli.errors import InvalidInputError

METRIC_NAMES = ("aesthetic", "prompt_global", "prompt_single", "consistency_all", "consistency_top10")


def _parse_metrics(text: str) -> list[str]:
    chosen = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in METRIC_NAMES]
    if unknown or not chosen:
        raise typer.BadParameter(
            f"unknown metric(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(METRIC_NAMES)}",
            param_hint="--metrics",
        )
    return [m for m in METRIC_NAMES if m in chosen]


def _run_folders(path: Path) -> list[Path]:
    """A run folder, or a folder of run folders (e.g. a batch of ST-Bench stories), in natural order."""
    from storymem_cli.eval.clips import natural_key

    if (path / "run.json").is_file():
        return [path]
    if path.is_dir():
        runs = sorted((p for p in path.iterdir() if (p / "run.json").is_file()), key=lambda p: natural_key(p.name))
        if runs:
            return runs
    raise InvalidInputError(
        f"{path}: not a run folder (no run.json) and holds no run folders",
        hint="pass folders written by `storymem render`, or clips from another system with --script S --shots DIR",
    )


def _story_inputs(path: Path) -> list[tuple[Path, list[Path], str]]:
    """(script file, clips, where they came from) for each run folder under `path`."""
    from storymem_cli.eval.clips import clips_in_run

    out = []
    for run in _run_folders(path):
        script = run / "script.json"
        if not script.is_file():
            raise InvalidInputError(f"{run}: run folder without script.json", hint="re-render the story or pass --script")
        out.append((script, clips_in_run(run), str(run)))
    return out


@app.command("eval")
def eval_command(
    run_dirs: list[Path] = typer.Argument(
        None, metavar="RUN_DIR", show_default=False,
        help="Run folders written by `storymem render` (script.json + the shot clips run.json lists), "
        "or folders holding run folders (one story each).",
    ),
    scripts: list[Path] = typer.Option(
        None, "--script", show_default=False,
        help="A story script whose clips come from any other system; pair each --script with a --shots, in order.",
    ),
    shots: list[Path] = typer.Option(
        None, "--shots", show_default=False,
        help="Folder with one clip per shot of the matching --script, sorted naturally (shot_2 before shot_10).",
    ),
    label: str = typer.Option(None, "--label", help="Name of the evaluated system in tables, JSON and the plot (default: the folder name)."),
    metrics_text: str = typer.Option(
        ",".join(METRIC_NAMES), "--metrics",
        help="Comma-separated subset of: " + ", ".join(METRIC_NAMES) + ". `--metrics aesthetic` needs no ViCLIP.",
    ),
    models_kind: str = typer.Option(
        "real", "--models",
        help="'real': the published metric models (weights from the paths below or the Hugging Face cache). "
        "'tiny': small random-weight models, to try the command on a CPU without downloads; the numbers mean nothing.",
    ),
    viclip: Path = typer.Option(None, "--viclip", help="ViClip-InternVid-10M-FLT.pth (Hugging Face OpenGVLab/ViCLIP) or a .safetensors export."),
    clip_l: str = typer.Option(None, "--clip-l", help="CLIP ViT-L/14 (OpenAI) open_clip checkpoint file or folder for the aesthetic score (default: the 'openai' weights from the hub cache)."),
    aesthetic_head: Path = typer.Option(None, "--aesthetic-head", help="LAION aesthetic v1 head sa_0_4_vit_l_14_linear.pth (github.com/LAION-AI/aesthetic-predictor)."),
    device: str = typer.Option("auto", "--device", help="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1', ..."),
    compare: list[str] = typer.Option(
        None, "--compare", show_default=False,
        help="Put another system beside this one (repeatable): a run folder or folder of run folders (evaluated too), "
        "a results file from `storymem eval --json`, or 'paper' for the paper's Table 1 rows.",
    ),
    as_json: bool = typer.Option(False, "--json", help='Print JSON: {"models", "stories", "systems"}; "stories" has one entry per story with the five metric keys, shots, pairs and notes; "systems" the means.'),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV: one row per story, then one per system mean (story = mean) and paper row."),
    plot_path: Path = typer.Option(None, "--plot", help="Write a PNG bar chart of the mean metrics per system to this path."),
) -> None:
    """Score story videos with the ST-Bench metrics of the StoryMem paper (Table 1).

    Aesthetic quality: LAION predictor on CLIP ViT-L/14 features, VBench recipe, / 10. Prompt following with ViCLIP: global (the whole story video vs story_overview) and single-shot (each shot vs its prompt). Cross-shot consistency: ViCLIP video cosine over all shot pairs, and over the 10 pairs with the most similar prompts.

    Definitions, our readings of what the paper leaves open, and where to get each weight file: docs/eval.md.
    """
    from storymem_cli.eval import report
    from storymem_cli.eval.clips import clips_in_folder
    from storymem_cli.eval.evaluate import evaluate_story
    from storymem_cli.eval.models import load_metric_models, resolve_device, tiny_metric_models
    from storymem_cli.script import load_script

    # 1. Check inputs.
    run_dirs, scripts, shots, compare = run_dirs or [], scripts or [], shots or [], compare or []
    metrics = _parse_metrics(metrics_text)
    if models_kind not in ("real", "tiny"):
        raise typer.BadParameter(f"{models_kind!r}: choose 'real' or 'tiny'", param_hint="--models")
    if as_json and as_csv:
        raise typer.BadParameter("choose one of --json and --csv", param_hint="--json/--csv")
    if len(scripts) != len(shots):
        raise typer.BadParameter(f"{len(scripts)} --script but {len(shots)} --shots: give them in pairs", param_hint="--script/--shots")
    if not run_dirs and not scripts:
        raise typer.BadParameter("nothing to evaluate: give RUN_DIR... or --script S --shots DIR", param_hint="RUN_DIR")
    if plot_path is not None:  # before the metric models load and every story is scored
        from storymem_cli.cli.paths import check_output_path

        check_output_path(plot_path, "--plot", folder=False)
    inputs = [item for path in run_dirs for item in _story_inputs(path)]
    inputs += [(s, clips_in_folder(d), str(d)) for s, d in zip(scripts, shots)]
    first = Path(inputs[0][2]).resolve()
    system = label or (first.parent.name if run_dirs and len(inputs) > 1 else first.name)
    saved_results = []  # stories read back from `--json` files
    compared_runs = []  # (system name, story inputs) evaluated beside ours
    for entry in (c for c in compare if c != "paper"):
        path = Path(entry)
        if path.is_file():
            saved_results += report.results_from_json(path)
        else:
            compared_runs.append((path.resolve().name, _story_inputs(path)))

    # 2. Load the metric models (all missing files are named at once).
    chosen = set(metrics)
    if models_kind == "tiny":
        typer.secho(f"warning: {report.TINY_WARNING}", err=True, fg="red", bold=True)
        models = tiny_metric_models(chosen, device=resolve_device(device))
    else:  # finds every file before the device is asked for (it imports torch)
        models = load_metric_models(chosen, viclip=viclip, clip_l=clip_l, aesthetic_head=aesthetic_head, device=device)
    dev = models.device

    # 3. Evaluate every story.
    def progress(message: str) -> None:
        typer.echo(message, err=True)

    def run(story_inputs, name):
        out = []
        for script_path, clips, source in story_inputs:
            script, _ = load_script(script_path)
            out.append(evaluate_story(script, clips, models, chosen, system=name, source=source, progress=progress))
        return out

    results = run(inputs, system)
    for name, story_inputs in compared_runs:
        results += run(story_inputs, name)
    results += saved_results

    # 4. Report.
    summaries = report.summarise(results)
    if "paper" in compare:
        summaries += report.paper_rows()
    tiny = models.kind == "tiny"
    models_info = {"kind": models.kind, "sources": models.sources, "device": dev, "metrics": metrics}
    if tiny:
        models_info["warning"] = report.TINY_WARNING
    if plot_path is not None:
        from storymem_cli.render.runfolder import raise_os_error

        try:
            report.plot(summaries, metrics, plot_path, tiny)
        except OSError as err:
            raise_os_error(err, plot_path)
        typer.echo(f"wrote {plot_path}", err=True)
    if as_json:
        typer.echo(report.to_json(results, summaries, models_info))
        return
    if as_csv:
        typer.echo(report.to_csv(results, summaries), nl=False)
        return
    from rich.console import Console

    console = Console()
    for summary in (s for s in summaries if s.source != "paper"):
        console.print(report.story_table([r for r in results if r.system == summary.system], summary, metrics, tiny))
        for r in results:
            if r.system == summary.system:
                for note in r.notes:
                    console.print(f"  [dim]{r.story}: {note}[/]", highlight=False)
    if len(summaries) > 1:
        console.print(report.compare_table(summaries, metrics, tiny))
    if tiny:
        console.print(f"[bold red]{report.TINY_WARNING}[/]")
