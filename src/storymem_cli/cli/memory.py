"""`storymem inspect-memory` and `storymem add-reference`: look at and edit a run's memory bank.

Shot numbers on the command line, in tables and in ``--json`` are 1-based, as in
``shots/shot_001.mp4`` and everywhere storymem talks to people; only memory.json (the bank's own
log) keeps the 0-based index.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from storymem_cli.cli.app import app
from storymem_cli.errors import DeclinedError, InvalidInputError

MEMORY_DIR = "memory"  # memory.bank.MEMORY_DIR, not imported: it would pull numpy into --help

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
        return repr(entry.source.name), "-"  # the role column already says reference
    return f"shot {entry.source.shot + 1}", str(entry.source.frame)


def _for_people(entry: MemoryEntry) -> dict[str, Any]:
    """An entry as memory.json stores it, with its shot numbers counted from 1 (source.shot,
    added_by_shot, evicted_by_shot), as the table and file names count them."""
    data = entry.model_dump(mode="json")
    if data["source"].get("kind") == "shot":
        data["source"]["shot"] += 1
    for key in ("added_by_shot", "evicted_by_shot"):
        if data[key] is not None:
            data[key] += 1
    return data


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _caption(entry: MemoryEntry) -> list[str]:
    source, frame = _source(entry)
    where = source if frame == "-" else f"{source} frame {frame}"
    status = entry.role if entry.active else f"{entry.role}, evicted by shot {entry.evicted_by_shot + 1}"
    return [entry.id, f"{where} ({status})", f"score {_num(entry.score)}  novelty {_num(entry.novelty)}"]


def _print_table(
    title: str, rows: list[tuple[str, MemoryEntry | None]], show_status: bool, why: dict[str, str] | None = None
) -> None:
    from rich.console import Console
    from rich.table import Table

    from rich import box

    # One line per entry at 80 columns: no file column (every image is memory/<id>.png, said in
    # the caption), a light box, ids never wrapped (people copy them into --remove).
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, caption=f"images: {MEMORY_DIR}/<id>.png",
                  caption_justify="left", padding=(0, 1), pad_edge=False)  # fmt: skip
    # Who each entry shows and why a shot used it: only for stories with characters.
    who = any(e is not None and e.characters for _, e in rows)
    extra = (["shows"] if who else []) + (["why"] if why else [])
    for column in ("id", "role", "source", "frame", "novelty", "score", *extra):
        numeric = column in ("frame", "novelty", "score")
        # The source wraps first; the id folds (still copyable) only on a very narrow terminal.
        table.add_column(column, justify="right" if numeric else "left", min_width=len(column),
                         no_wrap=column != "source", overflow="fold")  # fmt: skip
    if show_status:
        table.add_column("evicted by", min_width=6)
    for entry_id, e in rows:
        if e is None:
            table.add_row(entry_id, "(removed)", "", "", "", "", *[""] * len(extra), *([""] if show_status else []))
            continue
        source, frame = _source(e)
        cells = [e.id, e.role, source, frame, _num(e.novelty), _num(e.score)]
        # "names hero" -> "named": the shows column says whom; --json keeps the whole reason.
        reason = (why or {}).get(e.id, "")
        cells += ([", ".join(e.characters) or "-"] if who else []) + (
            ["named" if reason.startswith("names ") else reason] if why else []
        )
        if show_status:
            cells.append("" if e.active else f"shot {e.evicted_by_shot + 1}")
        table.add_row(*cells)
    Console(highlight=False).print(table)


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
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON: the entries as stored in memory.json, with shot numbers counted from 1."
    ),
) -> None:
    """List a run's memory bank: what the next shot will be conditioned on (references, then
    sink, then window oldest to newest), or with --shot N what shot N saw. For a story with
    characters, a column says who each entry shows, and with --shot N why the shot used it."""
    from storymem_cli.cli.paths import check_output_path

    if sheet is not None:
        check_output_path(sheet, "--sheet", folder=False)
    bank = _open_existing(run_dir)
    known = {e.id: e for e in bank.entries}
    why: dict[str, str] | None = None
    if shot is not None:
        record = bank.conditioning.get(shot - 1)
        if record is None:
            shots = ", ".join(str(k + 1) for k in sorted(bank.conditioning)) or "none"
            raise InvalidInputError(f"shot {shot} has no conditioning record in {bank.path}", hint=f"recorded: {shots}")
        rows = [(i, known.get(i)) for i in record]
        why = bank.retrieval.get(shot - 1)  # chosen by who the shot names (--retrieval characters)
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
            "entries": [_for_people(e) for e in present],
            "missing": [i for i, e in rows if e is None],
        }
        if why is not None:
            out["why"] = why
        if sheet is not None:
            out["sheet"] = str(sheet)
        typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    _print_table(f"{title} ({run_dir})", rows, show_status=include_evicted, why=why)


@app.command("add-reference")
def add_reference(
    run_dir: Path = typer.Argument(..., help="Run folder (created if new).", show_default=False),
    images: list[Path] | None = typer.Argument(None, help="Reference images (PNG, JPEG, WebP, ...).", show_default=False),
    name: list[str] | None = typer.Option(
        None, "--name", help="Name of the reference (character or place); once per image, in order. Default: file name."
    ),
    remove: list[str] | None = typer.Option(None, "--remove", help="Take the entry with this id out of memory."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: ids added and removed."),
    force: bool = typer.Option(
        False, "--force", help="Change the references of a run with finished shots without asking (every shot is "
        "conditioned on them, so the next render renders them all again)."
    ),
) -> None:
    """Add reference images as pinned initial memory (MR2V): the first shot is then generated
    from memory, and references are never evicted. Images are checked first; if any is bad,
    nothing is added. On a run with finished shots it asks first (or needs --force): the next
    render renders every shot again."""
    images = images or []
    names = name or []
    remove = remove or []
    if not images and not remove:
        raise InvalidInputError("nothing to do: give IMAGE paths to add, or --remove ID")
    if names and len(names) != len(images):
        raise InvalidInputError(f"--name given {len(names)} times for {len(images)} images: give one per image")

    from storymem_cli.cli.paths import check_output_path
    from storymem_cli.memory.bank import MEMORY_JSON, MemoryBank, reference_id
    from storymem_cli.memory.images import load_images_all_or_nothing
    from storymem_cli.render.runfolder import RunFolder, raise_os_error

    check_output_path(run_dir, "RUN_DIR", folder=True)

    loaded = load_images_all_or_nothing(images)  # before touching the run folder
    ref_names = names or [p.stem for p in images]
    if remove and not (run_dir / MEMORY_JSON).is_file():
        raise InvalidInputError(f"{run_dir}: no {MEMORY_JSON} here, nothing to remove")
    # Read only: MemoryBank.open would create memory.json in a new folder.
    current = MemoryBank.open(run_dir) if (run_dir / MEMORY_JSON).is_file() else None
    kept = [entry for entry in (current.active_entries() if current else []) if entry.role == "reference"
            and entry.id not in remove]  # fmt: skip
    _refuse_duplicates(kept, loaded, images)
    new_references = [e.id for e in kept if e.source.origin == "user"] + [
        reference_id(img, n) for img, n in zip(loaded, ref_names)
    ]
    _confirm_invalidation(run_dir, force, new_references)
    folder = RunFolder(run_dir)
    try:
        folder.root.mkdir(parents=True, exist_ok=True)
        # A render of this folder rewrites memory.json after every shot: an edit made meanwhile
        # would be reported as done and then lost, so wait for no one and refuse instead.
        with folder.locked():
            bank = MemoryBank.open(run_dir)
            removed = [bank.remove(entry_id).id for entry_id in remove]
            added = [bank.add_reference(img, n) for img, n in zip(loaded, ref_names)]
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


def _interactive() -> bool:
    """A person at a terminal who can answer a question (not a script or a pipe)."""
    import sys

    return sys.stdin.isatty() and sys.stderr.isatty()


def _refuse_duplicates(references: list[MemoryEntry], images: list[Any], paths: list[Path]) -> None:
    """One reference per image: the same pixels under a second name would take a second memory slot
    and weigh that image twice in every shot."""
    from storymem_cli.memory.bank import image_digest

    seen = {entry.sha256: f"{entry.id} (reference {entry.source.name!r})" for entry in references}
    for image, path in zip(images, paths):
        digest = image_digest(image)
        if digest in seen:
            raise InvalidInputError(
                f"{path}: the same image is already in memory as {seen[digest]}",
                hint="nothing was added; to give it another name, --remove that entry and add the image again "
                "with --name",
            )
        seen[digest] = str(path)


def _kept_shots(run_dir: Path, record: dict[str, Any], user_references: list[str]) -> int:
    """How many finished shots the next render keeps with these references (as `render --dry-run`
    says); 0 when the run folder cannot tell (no script.json, an older record)."""
    from storymem_cli.errors import StorymemError
    from storymem_cli.render.resume import kept_with_references
    from storymem_cli.script import load_script

    try:
        script, _ = load_script(run_dir / "script.json")
        return kept_with_references(record, script, user_references)
    except (StorymemError, KeyError, TypeError, OSError):
        return 0


def _confirm_invalidation(run_dir: Path, force: bool, user_references: list[str]) -> None:
    """References condition every shot (they are in each shot's fingerprint): changing them on a run
    with finished shots makes the next render discard them. Say how many, as the dry run will, and
    go on only with --force or a yes on a terminal."""
    from storymem_cli.render.runfolder import RunFolder

    record = RunFolder(run_dir).read_record()
    finished = sum(1 for shot in (record or {}).get("shots", []) if shot.get("status") == "done")
    if not finished:
        return
    again = finished - _kept_shots(run_dir, record, user_references)
    if not again:  # e.g. removing a reference that was added after the last render
        typer.echo(f"note: {run_dir}: the next render keeps all {finished} finished shots (they were rendered "
                   "with these references)", err=True)  # fmt: skip
        return
    which = f"all {finished}" if again == finished else f"the last {again} of the {finished}"
    message = (
        f"{run_dir} has {finished} finished shot{'s' if finished != 1 else ''}: every shot is conditioned on the "
        f"references, so the next render of this story renders {which} again"
    )
    if force:
        typer.echo(f"warning: {message}", err=True)
        return
    if _interactive():
        if typer.confirm(f"{message}. Change the references?", default=False, err=True):
            return
        raise DeclinedError("nothing changed: you answered no", hint="pass --force to change the references without asking")
    raise InvalidInputError(message, hint="pass --force to change them anyway, or add references to a new run folder")
