"""memory.json checked for meaning, not only type: what a render or add-reference could have written.

The types are pydantic's (memory.bank.BankFile); this module checks what they cannot: ids made
from the source and the pixels' hash, the shot that added an entry, eviction after addition and
oldest window entry first, embeddings that decode to finite float32 vectors, conditioning that
names only entries active at that shot. A hand-edited memory.json that passes is one the bank
itself could have written; anything else is refused (an edited ``evicted_by_shot`` would
silently change the memory of every later shot).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from storymem_cli.memory.bank import BankFile, MemoryEntry

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _embedding_problem(text: str) -> str | None:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return "is not base64 (memory.json stores each embedding as base64 of float32 values)"
    if not raw or len(raw) % 4:
        return f"decodes to {len(raw)} bytes, not a whole number of float32 values"
    if not np.isfinite(np.frombuffer(raw, dtype="<f4")).all():
        return "holds values that are not finite numbers"
    return None


def _entry_problem(entry: MemoryEntry) -> tuple[str, str] | None:
    """(field, problem) of one entry on its own."""
    from storymem_cli.memory.bank import ReferenceSource, _slug

    if not _SHA256.match(entry.sha256):
        return "sha256", "must be 64 lowercase hex digits"
    if entry.width < 1 or entry.height < 1:
        return "width", f"the image size {entry.width}x{entry.height} is not a size"
    if isinstance(entry.source, ReferenceSource):
        expected = f"ref-{_slug(entry.source.name)}-{entry.sha256[:8]}"
        if entry.role != "reference":
            return "role", f"a reference's role is 'reference', not {entry.role!r}"
        if entry.added_by_shot is not None or entry.evicted_by_shot is not None:
            return "added_by_shot", "a reference is added by no shot and never evicted: both must be null"
    else:
        if entry.source.shot < 0 or entry.source.frame < 0:
            return "source", "shot and frame count from 0"
        expected = f"s{entry.source.shot + 1:03d}-f{entry.source.frame:03d}-{entry.sha256[:8]}"
        if entry.role == "reference":
            return "role", "a keyframe's role is 'sink' or 'window'"
        if entry.added_by_shot != entry.source.shot:
            return "added_by_shot", f"is {entry.added_by_shot}, but the keyframe comes from shot {entry.source.shot}"
        if entry.evicted_by_shot is not None:
            if entry.role != "window":
                return "evicted_by_shot", "only window entries are evicted (sink entries stay)"
            if entry.evicted_by_shot < entry.added_by_shot:
                return "evicted_by_shot", f"is {entry.evicted_by_shot}, before the shot that added it ({entry.added_by_shot})"
    if entry.id != expected:
        return "id", f"is {entry.id!r}; an entry with this source and pixels is {expected!r}"
    if entry.embedding is not None:
        problem = _embedding_problem(entry.embedding)
        if problem:
            return "embedding", problem
    for name in ("score", "novelty"):
        value = getattr(entry, name)
        if value is not None and not math.isfinite(value):
            return name, "must be a finite number or null"
    return None


def bank_problem(data: BankFile) -> tuple[str, str] | None:
    """(JSON path, problem) of the first thing in ``data`` the bank could not have written, or None."""
    seen: set[str] = set()
    last_added = -1
    last_window_eviction = -1  # window entries leave oldest first: evictions never go back in time
    open_window = False  # a window entry still active: no later window entry may be evicted
    for i, entry in enumerate(data.entries):
        where = f"entries[{i}]"
        if entry.id in seen:
            return f"{where}.id", f"{entry.id!r} appears twice"
        seen.add(entry.id)
        problem = _entry_problem(entry)
        if problem:
            return f"{where}.{problem[0]}", problem[1]
        if entry.added_by_shot is not None:
            if entry.added_by_shot < last_added:
                return f"{where}.added_by_shot", f"is {entry.added_by_shot}, after an entry of shot {last_added}: the log is in order"
            last_added = entry.added_by_shot
        if entry.role == "window":
            evicted = entry.evicted_by_shot
            if evicted is not None and (open_window or evicted < last_window_eviction):
                return f"{where}.evicted_by_shot", "window entries are evicted oldest first, and an older one is still in memory or left later"
            if evicted is None:
                open_window = True
            else:
                last_window_eviction = evicted
    by_id = {entry.id: entry for entry in data.entries}
    for shot, ids in data.conditioning.items():
        if shot < 0:
            return f"conditioning.{shot}", "shots count from 0"
        for j, entry_id in enumerate(ids):
            entry = by_id.get(entry_id)  # an unknown id was removed with add-reference --remove: allowed
            if entry is not None and entry.added_by_shot is not None and not (
                entry.added_by_shot < shot and (entry.evicted_by_shot is None or entry.evicted_by_shot >= shot)
            ):
                return f"conditioning.{shot}[{j}]", f"{entry_id} was not in memory when shot {shot} was rendered"
    return None
