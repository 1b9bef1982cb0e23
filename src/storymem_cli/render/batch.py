"""Many scripts in one process: one run folder each, go on past failures, report them at the end."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storymem_cli.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    InvalidInputError,
    StorymemError,
)

DEFAULT_OUTPUT_ROOT = Path("runs")  # render a.json -> runs/a/ unless -o says otherwise


@dataclass(frozen=True)
class StoryJob:
    script: Path
    run_dir: Path


@dataclass(frozen=True)
class Failure:
    script: Path
    message: str
    exit_code: int

    def as_dict(self) -> dict[str, Any]:
        return {"script": str(self.script), "error": self.message, "exit_code": self.exit_code}


def plan_jobs(scripts: Sequence[Path], output: Path | None, *, batch: bool) -> list[StoryJob]:
    """Where each story goes: ``-o`` is the run folder for one script, the root folder for several."""
    if not batch:
        (script,) = scripts
        return [StoryJob(script, output if output is not None else DEFAULT_OUTPUT_ROOT / script.stem)]
    root = output if output is not None else DEFAULT_OUTPUT_ROOT
    by_stem: dict[str, list[Path]] = {}
    for script in scripts:
        by_stem.setdefault(script.stem, []).append(script)
    clashes = {stem: paths for stem, paths in by_stem.items() if len(paths) > 1}
    if clashes:
        listing = "; ".join(f"{stem}: {', '.join(map(str, paths))}" for stem, paths in sorted(clashes.items()))
        raise InvalidInputError(
            f"several scripts would render into the same folder under {root} ({listing})",
            hint="give the scripts distinct file names, or render them with separate -o folders",
        )
    return [StoryJob(script, root / script.stem) for script in scripts]


def run_jobs(
    jobs: Sequence[StoryJob],
    render_one: Callable[[StoryJob], dict[str, Any]],
    on_failure: Callable[[Failure], None],
    on_busy: Callable[[Failure], None] = lambda _: None,
) -> tuple[list[dict[str, Any]], list[Failure]]:
    """Render every job; a failing story is recorded and the batch goes on. A story whose folder
    another process is rendering (two unsharded batches over the same scripts) is that process's
    work, not a failure: it goes to ``on_busy``."""
    from storymem_cli.render.runfolder import FolderBusyError

    results: list[dict[str, Any]] = []
    failures: list[Failure] = []
    for job in jobs:
        try:
            results.append(render_one(job))
        except FolderBusyError as err:
            on_busy(Failure(job.script, str(err), EXIT_OK))
            continue
        except StorymemError as err:
            failure = Failure(job.script, str(err), err.exit_code)
        except Exception as err:  # noqa: BLE001  a bug in one story must not cost the rest of the batch
            detail = traceback.format_exc(limit=-3).strip()
            failure = Failure(job.script, f"unexpected {type(err).__name__}: {err}\n{detail}", EXIT_FAILURE)
        else:
            continue
        failures.append(failure)
        on_failure(failure)
    return results, failures


def batch_exit_code(failures: Sequence[Failure]) -> int:
    """0 if all rendered; the failures' exit code when they share one (2 if every failure was invalid
    input, 3 if every one lacked weights or hardware, ...); else 1."""
    if not failures:
        return EXIT_OK
    codes = {f.exit_code for f in failures}
    return codes.pop() if len(codes) == 1 else EXIT_FAILURE
