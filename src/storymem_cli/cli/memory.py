"""`storymem inspect-memory` and `storymem add-reference`: look at and edit a run's memory bank.

Shot numbers on the command line and in tables are 1-based, as in
``shots/shot_001.mp4``; memory.json and ``--json`` keep the 0-based index.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from storymem_cli.cli.app import app
from storymem_cli.errors import InvalidInputError

if TYPE_CHECKING:
    from storymem_cli.memory.bank import MemoryBank, MemoryEntry


def _open_existing(run_dir: Path) -> MemoryBank:
    from storymem_cli.memory.bank import MEMORY_JSON, MemoryBank

    if not (run_dir / MEMORY_JSON).is_file():
        raise InvalidInputError(
            f"{run_dir}: no {MEMORY_JSON} here",
            hint="pass a run folder written by `storymem render` or `storymem add-reference`",
        )
    return MemoryBank.open(run_dir)


def _source(entry: MemoryEntry) -> tuple[str, str]:
    if entry.source.kind == "reference":
        return f"reference {entry.source.name!r}", "-"
    return f"shot {entry.source.shot + 1}", str(entry.source.frame)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _caption(entry: MemoryEntry) -> list[str]:
    source, frame = _source(entry)
    where = source if frame == "-" else f"{source} frame {frame}"
    status = entry.role if entry.active else f"{entry.role}, evicted by shot {entry.evicted_by_shot + 1}"
    return [entry.id, f"{where} ({status})", f"score {_num(entry.score)}  novelty {_num(entry.novelty)}"]


def _print_table(title: str, rows: list[tuple[str, MemoryEntry | None]], show_status: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("id", "role", "source", "frame", "novelty", "score", "file"):
        numeric = column in ("frame", "novelty", "score")
        # ids stay on one line (people copy them into --remove); the path folds rather than truncates.
        table.add_column(
            column, justify="right" if numeric else "left", overflow="fold", no_wrap=numeric or column in ("id", "role")
        )
    if show_status:
        table.add_column("evicted by")
    for entry_id, e in rows:
        if e is None:
            table.add_row(entry_id, "(removed)", "", "", "", "", "", *([""] if show_status else []))
            continue
        source, frame = _source(e)
        cells = [e.id, e.role, source, frame, _num(e.novelty), _num(e.score), e.file]
        if show_status:
            cells.append("" if e.active else f"shot {e.evicted_by_shot + 1}")
        table.add_row(*cells)
    Console(soft_wrap=True).print(table)


@app.command("inspect-memory")
def inspect_memory(
    run_dir: Path = typer.Argument(..., help="Run folder (holds memory.json and memory/).", show_default=False),
    shot: int | None = typer.Option(
        None, "--shot", min=1, help="Show what shot N (1-based) was conditioned on, in order."
    ),
    include_evicted: bool = typer.Option(False, "--all", help="Include evicted entries (the whole log)."),
    sheet: Path | None = typer.Option(
        None, "--sheet", help="Also write a contact-sheet PNG here: one captioned thumbnail per entry."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (entries as stored in memory.json)."),
) -> None:
    """List a run's memory bank: what the next shot will be conditioned on (references, then
    sink, then window oldest to newest), or with --shot N what shot N saw."""
    from storymem_cli.cli.paths import check_output_path

    if sheet is not None:
        check_output_path(sheet, "--sheet", folder=False)
    bank = _open_existing(run_dir)
    known = {e.id: e for e in bank.entries}
    if shot is not None:
        record = bank.conditioning.get(shot - 1)
        if record is None:
            shots = ", ".join(str(k + 1) for k in sorted(bank.conditioning)) or "none"
            raise InvalidInputError(f"shot {shot} has no conditioning record in {bank.path}", hint=f"recorded: {shots}")
        rows = [(i, known.get(i)) for i in record]
        title = f"memory seen by shot {shot}"
    else:
        chosen = bank.entries if include_evicted else bank.conditioning_entries()
        rows = [(e.id, e) for e in chosen]
        title = "memory log" if include_evicted else "memory for the next shot"

    present = [e for _, e in rows if e is not None]
    if sheet is not None:
        if not present:
            raise InvalidInputError("no memory entries to draw: the contact sheet would be empty")
        from storymem_cli.memory.sheet import render_contact_sheet, write_png

        from storymem_cli.render.runfolder import raise_os_error

        drawn = render_contact_sheet([bank.load_image(e) for e in present], [_caption(e) for e in present])
        try:
            write_png(sheet, drawn)
        except OSError as err:
            raise_os_error(err, sheet)
        typer.echo(f"wrote {sheet} ({len(present)} tiles)", err=True)

    if as_json:
        out: dict[str, Any] = {
            "run_dir": str(run_dir),
            "shot": shot,
            "entries": [e.model_dump(mode="json") for e in present],
            "missing": [i for i, e in rows if e is None],
        }
        if sheet is not None:
            out["sheet"] = str(sheet)
        typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    _print_table(f"{title} ({run_dir})", rows, show_status=include_evicted)


@app.command("add-reference")
def add_reference(
    run_dir: Path = typer.Argument(..., help="Run folder (created if new).", show_default=False),
    images: list[Path] | None = typer.Argument(None, help="Reference images (PNG, JPEG, WebP, ...).", show_default=False),
    name: list[str] | None = typer.Option(
        None, "--name", help="Name of the reference (character or place); once per image, in order. Default: file name."
    ),
    remove: list[str] | None = typer.Option(None, "--remove", help="Take the entry with this id out of memory."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: ids added and removed."),
) -> None:
    """Add reference images as pinned initial memory (MR2V): the first shot is then generated
    from memory, and references are never evicted. Images are checked first; if any is bad,
    nothing is added."""
    images = images or []
    names = name or []
    remove = remove or []
    if not images and not remove:
        raise InvalidInputError("nothing to do: give IMAGE paths to add, or --remove ID")
    if names and len(names) != len(images):
        raise InvalidInputError(f"--name given {len(names)} times for {len(images)} images: give one per image")

    from storymem_cli.cli.paths import check_output_path
    from storymem_cli.memory.bank import MEMORY_JSON, MemoryBank
    from storymem_cli.memory.images import load_images_all_or_nothing
    from storymem_cli.render.runfolder import RunFolder, raise_os_error

    check_output_path(run_dir, "RUN_DIR", folder=True)

    loaded = load_images_all_or_nothing(images)  # before touching the run folder
    if remove and not (run_dir / MEMORY_JSON).is_file():
        raise InvalidInputError(f"{run_dir}: no {MEMORY_JSON} here, nothing to remove")
    folder = RunFolder(run_dir)
    try:
        folder.root.mkdir(parents=True, exist_ok=True)
        # A render of this folder rewrites memory.json after every shot: an edit made meanwhile
        # would be reported as done and then lost, so wait for no one and refuse instead.
        with folder.locked():
            bank = MemoryBank.open(run_dir)
            removed = [bank.remove(entry_id).id for entry_id in remove]
            added = [bank.add_reference(img, n) for img, n in zip(loaded, names or [p.stem for p in images])]
            bank.save()
    except OSError as err:
        raise_os_error(err, run_dir)
    if as_json:
        typer.echo(json.dumps({"run_dir": str(run_dir), "added": added, "removed": removed}, indent=2))
        return
    for entry_id in removed:
        typer.echo(f"removed {entry_id}")
    for entry_id in added:
        typer.echo(f"added {entry_id}")
