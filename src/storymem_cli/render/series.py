"""Series: a story that starts from the memory of an earlier run (``render --memory-from RUN_DIR``).

The earlier run is only read. Its memory as its next shot would have seen it (references, sink,
window) becomes references of the new story, origin "series", with the characters each entry
showed, so episode 2 keeps episode 1's cast. At most ``capacity - keyframes per shot - the new
story's own references`` are taken (references first, then sink, then the newest window
entries), so the new story's keyframes still find room in the window.

The earlier run must be finished, undamaged (render/integrity.py: every file and memory image as
it was written) and made with the same model and weights: memory from another model's frames is
not what this model was trained to continue. Its identity (memory.json, the story's video and its
script, by content) is in every shot's fingerprint: when the earlier run changes, the new story
renders again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storymem_cli.errors import InvalidInputError
from storymem_cli.render.runfolder import RunFolder

_HINT = "give --memory-from the folder of a finished `storymem render` of the same --model"


def _refuse(path: Path, why: str, hint: str = _HINT) -> InvalidInputError:
    return InvalidInputError(f"--memory-from {path}: {why}", hint=hint)


@dataclass(frozen=True)
class SeriesSource:
    """A checked earlier run: where it is, what it was, and its identity."""

    root: Path
    story_name: str
    identity: str

    def describe(self) -> dict[str, Any]:
        return {"run_dir": str(self.root), "story_name": self.story_name, "identity": self.identity}


def open_source(path: Path, *, model: str, weights: str, output: Path) -> SeriesSource:
    """The earlier run at ``path``, checked; refuses one that is missing, unfinished, damaged, made
    with another model (``model`` name and ``weights`` identity) or the output folder itself."""
    from storymem_cli.memory.bank import MEMORY_JSON, MemoryBank
    from storymem_cli.render.integrity import first_untrusted_shot

    if not path.is_dir():
        raise _refuse(path, "no such run folder")
    if path.resolve() == output.resolve():
        raise _refuse(path, "is this story's own run folder", "render the next part into another folder with -o")
    try:
        record = RunFolder(path).read_record()
    except InvalidInputError as err:
        raise _refuse(path, f"its run.json cannot be read ({err.message})") from None
    if record is None:
        raise _refuse(path, "has no run.json: not a run folder")
    if record.get("status") != "done":
        raise _refuse(path, "has not finished rendering", f"finish it first: storymem render ... -o {path}")
    made_with = (record.get("settings") or {}).get("model")
    if made_with != model or record.get("weights_identity") != weights:
        what = f"model {made_with!r}" if made_with != model else f"other weights of {model!r}"
        raise _refuse(path, f"was rendered with {what}, not the {model!r} this render uses: its memory "
                      "would not fit this model", f"render with --model {made_with}, or start the series anew")  # fmt: skip
    if not (path / MEMORY_JSON).is_file():
        raise _refuse(path, "has no memory bank (rendered with --no-memory?)")
    try:
        bank = MemoryBank.open(path)  # it exists: nothing is created
    except InvalidInputError as err:
        raise _refuse(path, f"is damaged: {err.message}", f"render it again to repair it (storymem render ... -o {path})") from None
    untrusted = first_untrusted_shot(path, record.get("shots", []), bank)
    if untrusted is not None:
        raise _refuse(path, f"is damaged: shot {untrusted.shot + 1}: {untrusted.reason}",
                      f"render it again to repair it (storymem render ... -o {path}), then continue the series")  # fmt: skip
    for entry in bank.conditioning_entries():
        damage = bank.image_problem(entry)
        if damage:
            raise _refuse(path, f"is damaged: memory entry {entry.id}: {damage}",
                          f"render it again to repair it (storymem render ... -o {path})")  # fmt: skip
    identity = hashlib.sha256(
        json.dumps(
            {
                "memory": hashlib.sha256((path / MEMORY_JSON).read_bytes()).hexdigest(),
                "video": record.get("video_sha256"),
                "script": record.get("script_sha256"),
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()
    return SeriesSource(root=path.resolve(), story_name=str(record.get("story_name")), identity=identity)


def series_references(source: SeriesSource, room: int) -> list[tuple[str, Any, list[str]]]:
    """(name, image, characters) of the earlier run's memory to pin, at most ``room``: references,
    then sink, then the newest window entries; in the order its next shot would have seen them."""
    from storymem_cli.memory.bank import MemoryBank

    bank = MemoryBank.open(source.root)
    usual = bank.conditioning_entries()
    priority = [e for e in usual if e.role != "window"] + [e for e in reversed(usual) if e.role == "window"]
    keep = {e.id for e in priority[: max(room, 0)]}
    return [
        (e.source.name if e.source.kind == "reference" else e.id, bank.load_image(e), list(e.characters))
        for e in usual
        if e.id in keep
    ]
