"""Resume and re-render decisions, as pure functions over run.json records.

Each finished shot's record carries a fingerprint of everything its frames
depend on directly: the settings, the shot's own script entry
(``script.shot_fingerprint(i)``, which covers the reference images), its mode
and seed. A shot also depends
on every shot before it (memory, continuation frames), so a run keeps the
longest prefix of finished shots whose fingerprints still match and renders
from the first one that does not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from storymem_cli.errors import InvalidInputError
from storymem_cli.render.plan import ShotPlan


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def shot_fingerprint(
    settings_fp: str,
    script_shot_fp: str,
    plan: ShotPlan,
    user_references: Sequence[str] = (),
    weights: str | None = None,
    series: str | None = None,
) -> str:
    """What shot ``plan.index`` depends on besides the shots before it: the settings, its script
    entry (prompt, cut, seed override, reference images: ``script.shot_fingerprint``), mode, seed,
    the references pinned with add-reference (content-addressed ids): every shot's memory
    starts from them, the weights behind the settings' model name (``models.identity``), and the
    identity of the earlier run a series starts from (``render.series``)."""
    # The generation mode, not the plan's name for it: MR2V was recorded as m2v before run format 3,
    # and a new name must not re-render those shots.
    payload = {"settings": settings_fp, "script": script_shot_fp, "mode": plan.generation_mode, "seed": plan.seed}
    if weights is not None:
        payload["weights"] = weights
    if user_references:  # absent when there are none: fingerprints of runs without them stay as they were
        payload["user_references"] = list(user_references)
    if series is not None:
        payload["series"] = series
    return _digest(payload)


def kept_prefix(
    done_records: Sequence[dict[str, Any]],
    fingerprints: Sequence[str],
    files_present: Callable[[int], bool],
) -> int:
    """How many leading shots of a previous run can be kept (= the index of the first to render)."""
    kept = 0
    for expected_index, (record, fingerprint) in enumerate(zip(done_records, fingerprints)):
        if (
            record.get("index") != expected_index
            or record.get("status") != "done"
            or record.get("fingerprint") != fingerprint
            or not files_present(expected_index)
        ):
            break
        kept += 1
    return kept


def kept_with_references(record: dict[str, Any], script: Any, user_references: Sequence[str]) -> int:
    """How many finished shots of ``record`` (a run.json) a render would keep if the references pinned
    with add-reference were ``user_references``, everything else as recorded: the shots' fingerprints
    computed as the render computes them, from the run's own settings and ``script`` (its script.json)."""
    from storymem_cli.render.plan import plan_story

    settings = record["settings"]
    plans = plan_story(
        script.shots,
        has_references=bool(script.references) or bool(user_references),
        continuation=settings["continuation"],
        use_memory=settings["use_memory"],
        base_seed=settings["seed"],
    )
    script_fps = script.shot_fingerprints()
    expected = [
        shot_fingerprint(record["settings_fingerprint"], script_fps[p.index], p, user_references, record.get("weights_identity"))
        for p in plans
    ]
    return kept_prefix(record.get("shots", []), expected, lambda index: True)


def check_same_story(record: dict[str, Any], story_name: str, run_dir: Path) -> None:
    """Refuse to continue another story's run folder."""
    previous = record.get("story_name")
    if previous != story_name:
        raise InvalidInputError(
            f"{run_dir} holds a render of another story ({previous!r}, not {story_name!r})",
            hint="choose another output folder with -o, or pass --restart to replace that render",
        )
