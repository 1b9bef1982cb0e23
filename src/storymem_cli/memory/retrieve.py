"""Which memory entries a shot is conditioned on: the paper's memory, or chosen by who the shot names.

The paper's memory (SPEC 7) is every active entry: references, then sink, then window oldest to
newest. Its weakness (paper, Appendix C) is that it is purely visual: with two characters in
the bank, the shot about one of them sees the other as much. ``characters`` retrieval uses the
script's characters (entries are tagged with the characters their shot named) within the same
budget M (the bank's capacity):

1. the entries of the characters the shot names come first: their references, then their
   keyframes newest first (from the whole log: a keyframe the window has evicted still shows
   who it shows), then keyframes of an earlier run (``--memory-from``) newest first;
2. the usual memory fills what is left: references, sink, then window newest first, leaving out
   entries that show only characters the shot does not name (the confusion of Appendix C);
3. a shot that names nobody sees the paper's memory, exactly.

The chosen entries are given to the model in the usual order (references, sink, window; the log's
order within each), so a shot whose pick equals the paper's memory is conditioned identically.
Pure: entries in, ids and reasons out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from storymem_cli.memory.bank import MemoryEntry

Retrieval = Literal["characters", "paper"]
ROLE_ORDER = {"reference": 0, "sink": 1, "window": 2}


@dataclass(frozen=True)
class Pick:
    """One entry a shot sees, and why: ``names X, Y`` (a character the shot names) or its role."""

    id: str
    why: str


def paper_memory(log: Sequence[MemoryEntry]) -> list[MemoryEntry]:
    """Every active entry: references, then sink, then window oldest to newest (SPEC 7)."""
    active = [e for e in log if e.active]
    return [e for role in ROLE_ORDER for e in active if e.role == role]


def _is_series(entry: MemoryEntry) -> bool:
    return entry.source.kind == "reference" and entry.source.origin == "series"


def retrieve(log: Sequence[MemoryEntry], named: Sequence[str], budget: int) -> list[Pick]:
    """The entries a shot naming ``named`` (character names) sees, at most ``budget``, in order.

    ``log``: the bank's whole log as it stands before the shot (evicted entries included)."""
    usual = paper_memory(log)
    if not named:
        return [Pick(e.id, e.role) for e in usual]
    wanted = set(named)
    position = {e.id: i for i, e in enumerate(log)}

    def shown(entry: MemoryEntry) -> list[str]:
        return [name for name in named if name in entry.characters]

    theirs = [e for e in log if shown(e)]
    refs = [e for e in theirs if e.role == "reference" and e.active and not _is_series(e)]
    keyframes = sorted(
        (e for e in theirs if e.role != "reference"), key=lambda e: (e.added_by_shot or 0, position[e.id]), reverse=True
    )
    earlier_run = [e for e in reversed(theirs) if _is_series(e) and e.active]
    chosen = (refs + keyframes + earlier_run)[:budget]
    picks = {e.id: Pick(e.id, "names " + ", ".join(shown(e))) for e in chosen}

    rest = [e for e in usual if e.id not in picks and not (e.characters and not wanted & set(e.characters))]
    priority = [e for e in rest if e.role != "window"] + [e for e in reversed(rest) if e.role == "window"]
    for e in priority[: budget - len(chosen)]:
        picks[e.id] = Pick(e.id, e.role)

    by_id = {e.id: e for e in log}
    order = sorted(picks, key=lambda i: (ROLE_ORDER[by_id[i].role], position[i]))
    return [picks[i] for i in order]
