"""`storymem validate`: check story scripts without rendering anything (and without torch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from storymem_cli.cli.app import app
from storymem_cli.errors import EXIT_INVALID, InvalidInputError
from storymem_cli.script import ScriptError, StoryScript, load_script


def _check(path: Path) -> dict[str, Any]:
    """One file's result in the shape `--json` prints."""
    try:
        script, warnings = load_script(path)
    except ScriptError as err:
        return {
            "path": str(path),
            "valid": False,
            "story_name": None,
            "scenes": None,
            "shots": None,
            "continuations": None,
            "errors": [p.to_dict() for p in err.problems],
            "warnings": [p.to_dict() for p in err.warnings],
        }
    return {
        "path": str(path),
        "valid": True,
        "story_name": script.story_name,
        "scenes": len(script.scenes),
        "shots": len(script.shots),
        "continuations": script.continuations,
        "errors": [],
        "warnings": [p.to_dict() for p in warnings],
    }


def _line(file: str, problem: dict[str, str], prefix: str = "") -> str:
    where = f"{problem['path']}: " if problem["path"] else ""
    return f"{file}: {where}{prefix}{problem['message']}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _print_human(result: dict[str, Any]) -> None:
    file = result["path"]
    if result["valid"]:
        typer.echo(
            f'{file}: ok: "{result["story_name"]}", {_plural(result["scenes"], "scene")}, '
            f"{_plural(result['shots'], 'shot')} ({_plural(result['continuations'], 'continuation')})"
        )
    else:
        typer.echo(f"{file}: invalid: {_plural(len(result['errors']), 'problem')}")
    for problem in result["errors"]:
        typer.echo(_line(file, problem), err=True)
    for problem in result["warnings"]:
        typer.echo(_line(file, problem, "warning: "), err=True)


@app.command()
def validate(
    scripts: list[Path] = typer.Argument(
        None, metavar="SCRIPT", help="Story script files (JSON or JSON5), e.g. examples/*.json.", show_default=False
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help='Print a JSON list: {"path", "valid", "story_name", "scenes", "shots", "continuations", '
        '"errors": [{"path", "message"}], "warnings": [...]} per file.',
    ),
    schema: bool = typer.Option(
        False, "--schema", help="Print the JSON Schema of the story-script format (for editors and LLMs) and exit."
    ),
) -> None:
    """Check story scripts: structure, types, cut flags, scene order, reference images.

    Prints one line per script (story name, scenes, shots, continuations) and its
    warnings; each error goes to stderr as FILE: PATH: message, PATH being a JSON
    path such as scenes[1].cut[2]. Exits 0 when every script is valid, 2 when any is not.
    """
    if schema and scripts:  # it would print the schema and check nothing: say so instead
        raise InvalidInputError(
            f"--schema prints the script format and checks no script, but {len(scripts)} were given",
            hint="storymem validate --schema > schema.json; then storymem validate SCRIPT...",
        )
    if schema:
        document = {"$schema": "https://json-schema.org/draft/2020-12/schema", **StoryScript.model_json_schema()}
        typer.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    if not scripts:
        raise InvalidInputError("no script given", hint="storymem validate examples/*.json")

    results = [_check(path) for path in scripts]
    if as_json:
        typer.echo(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        for result in results:
            _print_human(result)
        if len(results) > 1:
            valid = sum(r["valid"] for r in results)
            typer.echo(f"{valid} of {len(results)} scripts valid")
    if not all(r["valid"] for r in results):
        raise typer.Exit(EXIT_INVALID)


__all__ = ["validate"]
