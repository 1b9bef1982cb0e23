"""Retrieval by who is in the shot: a pure function over the bank's log (no model, no images)."""

from __future__ import annotations

import numpy as np
import pytest

from storymem_cli.config import MemoryConfig
from storymem_cli.memory.bank import MemoryBank, MemoryEntry, ReferenceSource, ShotSource
from storymem_cli.memory.retrieve import paper_memory, retrieve


def entry(entry_id: str, role: str = "window", shot: int | None = 0, who=(), evicted: int | None = None,
          origin: str | None = None) -> MemoryEntry:  # fmt: skip
    source = ReferenceSource(name=entry_id, origin=origin) if role == "reference" else ShotSource(shot=shot, frame=0)
    return MemoryEntry(id=entry_id, file=f"memory/{entry_id}.png", source=source, role=role, width=1, height=1,
                       sha256="0", added_by_shot=None if role == "reference" else shot, evicted_by_shot=evicted,
                       characters=list(who))  # fmt: skip


# A story of two characters: Mia in shots 0, 2, 4; Bob in shots 1, 3. Sink: shot 0's first keyframes.
LOG = [
    entry("ref-mia", "reference", who=["Mia"], origin="script"),
    entry("s0a", "sink", 0, ["Mia"]),
    entry("s0b", "sink", 0, ["Mia"]),
    entry("s1a", "window", 1, ["Bob"], evicted=4),
    entry("s1b", "window", 1, ["Bob"]),
    entry("s2a", "window", 2, ["Mia"]),
    entry("s2b", "window", 2, []),  # a shot that named nobody
    entry("s3a", "window", 3, ["Bob", "Mia"]),
    entry("s4a", "window", 4, ["Mia"]),
]


def ids(picks) -> list[str]:
    return [p.id for p in picks]


def test_a_shot_naming_nobody_sees_the_papers_memory():
    picks = retrieve(LOG, [], budget=5)
    assert ids(picks) == [e.id for e in paper_memory(LOG)]
    assert "s1a" not in ids(picks)  # evicted: the paper's memory does not see it
    assert [p.why for p in picks][:3] == ["reference", "sink", "sink"]


def test_paper_memory_is_the_banks_conditioning_entries(tmp_path):
    bank = MemoryBank.open(tmp_path, MemoryConfig(capacity=4, sink_size=1))
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    bank.add_reference(image, "Mia", characters=["Mia"])
    for shot in range(4):
        frames = np.full((2, 4, 4, 3), shot * 10, dtype=np.uint8)
        frames[1] += 1
        bank.add_shot_keyframes(shot, frames, [0, 1], np.eye(2, dtype=np.float32), None, characters=["Mia"])
    assert ids(retrieve(bank.entries, [], 4)) == [e.id for e in bank.conditioning_entries()]


def test_the_named_characters_entries_come_first_newest_first_and_the_others_stay_out():
    picks = retrieve(LOG, ["Bob"], budget=4)
    why = {p.id: p.why for p in picks}
    # Bob's keyframes, the evicted one too; then the usual memory without Mia-only entries.
    assert why == {"s1a": "names Bob", "s1b": "names Bob", "s3a": "names Bob", "s2b": "window"}
    # Given in the usual order: references, sink, window by their place in the log.
    assert ids(picks) == ["s1a", "s1b", "s2b", "s3a"]


def test_the_budget_keeps_the_newest_of_a_characters_entries():
    picks = retrieve(LOG, ["Mia"], budget=3)
    assert {p.id for p in picks} == {"ref-mia", "s4a", "s3a"}  # reference first, then newest keyframes
    assert all(p.why == "names Mia" for p in picks)


def test_the_rest_fills_with_sink_then_the_newest_window():
    picks = retrieve(LOG[:5], ["Bob"], budget=4)  # Bob: s1a, s1b; fill: none (Mia-only entries stay out)
    assert ids(picks) == ["s1a", "s1b"]
    log = [*LOG[:3], entry("w1", "window", 1), entry("w2", "window", 2), entry("w3", "window", 3),
           entry("b4", "window", 4, ["Bob"])]  # fmt: skip
    picks = retrieve(log, ["Bob"], budget=3)
    assert [(p.id, p.why) for p in picks] == [("w2", "window"), ("w3", "window"), ("b4", "names Bob")]


def test_a_first_appearance_sees_the_usual_memory_without_the_others():
    picks = retrieve(LOG, ["Zed"], budget=10)
    assert ids(picks) == ["s2b"]  # every other entry shows only Mia or Bob


def test_keyframes_of_an_earlier_run_come_after_this_runs():
    log = [entry("old-mia", "reference", who=["Mia"], origin="series"), *LOG[1:]]
    picks = retrieve(log, ["Mia"], budget=5)
    assert "old-mia" not in ids(picks)  # five newer Mia entries fill the budget first
    picks = retrieve(log, ["Mia"], budget=10)
    assert ids(picks)[0] == "old-mia" and len(picks) == 7


@pytest.mark.parametrize("budget", [1, 2, 5, 10])
def test_never_more_than_the_budget_and_never_twice(budget):
    for named in ([], ["Mia"], ["Bob"], ["Mia", "Bob"]):
        picks = retrieve(LOG, named, budget)
        assert len(picks) <= max(budget, len(paper_memory(LOG)) if not named else budget)
        assert len(set(ids(picks))) == len(picks)
