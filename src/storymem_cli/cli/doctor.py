"""`storymem doctor`: check, in seconds on any machine, that a render would start, before spending GPU time."""

from __future__ import annotations

import json

import typer

from storymem_cli.cli.app import app
from storymem_cli.cli.download import Aesthetic, Continuation
from storymem_cli.errors import EXIT_UNAVAILABLE

MARKS = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]", "skip": "[dim]skip[/]"}


@app.command()
def doctor(
    model: str = typer.Option(
        "wan2.2-a14b", "--model", "-m", help="The preset, or a model folder (DIR/i2v, DIR/t2v, DIR/lora), to check."
    ),
    continuation: Continuation = typer.Option(  # type: ignore[valid-type]
        "mi2v", help="The render's --continuation: which StoryMem LoRA variant must be there."
    ),
    aesthetic: Aesthetic | None = typer.Option(  # type: ignore[valid-type]
        None, help="The render's --aesthetic (default: the model's): which scorer's files must be there."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
) -> None:
    """Check that a render of MODEL would start here, without loading a tensor: every file the loader needs
    (Hugging Face cache or folder), the configs against the model's widths, every safetensors header
    against its file's size, the StoryMem LoRA's keys against the experts (built on the meta device), the
    keyframe scorers' files, torch / CUDA / GPU memory against the offload flags it needs, and the disk.

    One table on stdout (--json: a list of rows). Exit 0 when a render would start (rows ok or warn),
    else 1 with the failing rows' hints.
    """
    from storymem_cli.models.doctor import a14b_expected, run_doctor
    from storymem_cli.models.presets import A14B
    from storymem_cli.models.registry import resolve_preset

    preset = resolve_preset(model)
    if preset.builtin:
        typer.echo(f"{preset.name} is built in: it needs no downloads and runs on the CPU", err=True)
        return
    a14b = preset.i2v_source in (A14B.i2v_source,) or preset.memory == A14B.memory  # A14B or a folder of it
    rows = run_doctor(preset, continuation.value, aesthetic.value if aesthetic else None,
                      expected=a14b_expected() if a14b else None)  # fmt: skip
    failed = [r for r in rows if r.status == "fail"]
    if json_output:
        typer.echo(json.dumps([r.__dict__ for r in rows], indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"storymem doctor: {preset.name}", show_lines=False)
        for column in ("check", "", "details"):
            table.add_column(column, overflow="fold")
        for r in rows:
            table.add_row(r.name, MARKS[r.status], r.detail + (f"\n[dim]-> {r.hint}[/]" if r.hint and r.status != "ok" else ""))
        console = Console()
        console.print(table)
        console.print("a render would start" if not failed else f"{len(failed)} check(s) failed: a render would not start")
    if failed:
        raise typer.Exit(EXIT_UNAVAILABLE)  # what a render needs is not here (or not readable)
