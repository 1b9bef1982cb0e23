"""The memory bank: an append-only log of keyframes, saved as PNGs plus memory.json.

Every entry keeps the shot that added it (``added_by_shot``) and the shot whose
update evicted it (``evicted_by_shot``, None while active), so the state before
any shot can be rebuilt exactly (resume; re-render from an edited shot).

Rules (SPEC 6-7):
- roles: ``reference`` (user images, pinned, never evicted), ``sink`` (never
  evicted), ``window`` (the rest, oldest evicted first). References take the sink
  slots first: with 3 sink slots and 1 reference, the story's first 2 keyframes are
  sink; with 3 or more references no keyframe is (SPEC 7: "or the references").
- capacity counts every active entry; after a shot's keyframes are added, the
  oldest window entries are evicted until the bank fits. If pinned entries alone
  fill it, new keyframes are evicted at once (they stay in the log).
- deduplication against the bank happens in ``select.select_keyframes`` (it sees
  the bank's embeddings); ``add_shot_keyframes`` adds what it is given.
- the JSON is the truth: loading never globs ``memory/`` (the release's glob
  leaked stale frames into memory). Entry ids and PNG names carry a hash of the
  pixels, so a PNG is never overwritten with different content and PNGs of
  evicted or rolled-back entries can stay on disk.
- ``save`` is atomic: new PNGs first, then memory.json via a temp file and
  ``os.replace``; a crash in between leaves the previous bank intact.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from storymem_cli.config import MemoryConfig
from storymem_cli.errors import InvalidInputError, StorymemError

if TYPE_CHECKING:
    from storymem_cli.memory.embed import Embedder

FORMAT_VERSION = 1
MEMORY_JSON = "memory.json"
MEMORY_DIR = "memory"

Role = Literal["sink", "window", "reference"]

# The names this module writes in memory/ (keyframes "s001-f004-<8 hex>", references
# "ref-<slug>-<8 hex>") and its temp names (".<name>.<pid>.tmp"): --restart removes these and
# nothing else a user put there.
_OWNED_PNG = re.compile(r"^(s\d{3,}-f\d{3,}|ref-[a-z0-9-]+)-[0-9a-f]{8}\.png$")
_OWNED_TEMP = re.compile(r"^\.(?P<name>.+)\.\d+\.tmp$")


def is_bank_file(name: str) -> bool:
    """True for a file name in memory/ that a MemoryBank wrote (a PNG or a temp of one)."""
    temp = _OWNED_TEMP.match(name)
    return bool(_OWNED_PNG.match(temp["name"] if temp else name))


def is_bank_json_temp(name: str) -> bool:
    """True for a temp of memory.json (in the run folder) left by a killed save."""
    temp = _OWNED_TEMP.match(name)
    return temp is not None and temp["name"] == MEMORY_JSON


class ShotSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["shot"] = "shot"
    shot: int  # 0-based global shot index
    frame: int  # frame index within the shot's frames as given to the bank


class ReferenceSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["reference"] = "reference"
    name: str
    # Who pinned it: "user" (storymem add-reference; render never removes it), "script" (the
    # script's `references` and its characters' images, kept in step with the script by render) or
    # "series" (a keyframe of the run named by `render --memory-from`, kept in step with that run).
    origin: Literal["user", "script", "series"] = "user"


class MemoryEntry(BaseModel):
    """One remembered image. ``file`` is relative to the run folder."""

    model_config = ConfigDict(extra="forbid")
    id: str
    file: str
    source: Annotated[ShotSource | ReferenceSource, Field(discriminator="kind")]
    role: Role
    width: int
    height: int
    sha256: str  # of the pixels (shape + uint8 bytes), not of the PNG encoding
    embedding: str | None = None  # base64 of little-endian float32: exact, compact
    embedder: str | None = None  # which embedder produced it
    score: float | None = None  # quality score (scorer's scale)
    novelty: float | None = None  # 1 - cosine to the previous keyframe of its shot
    added_by_shot: int | None = None  # None: references (user state, not a render step)
    evicted_by_shot: int | None = None  # None while active
    # The script's characters its shot named (or the reference's character): entity-aware retrieval.
    characters: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _file_inside_memory_folder(self) -> MemoryEntry:
        # A hand-edited memory.json must not make the bank read or write outside memory/.
        if self.file != f"{MEMORY_DIR}/{self.id}.png" or "/" in self.id or "\\" in self.id or ".." in self.id:
            raise ValueError(f"file must be {MEMORY_DIR}/<id>.png with a plain id, got {self.file!r}")
        return self

    @property
    def active(self) -> bool:
        return self.evicted_by_shot is None

    def embedding_array(self) -> np.ndarray | None:
        if self.embedding is None:
            return None
        return np.frombuffer(base64.b64decode(self.embedding), dtype="<f4").astype(np.float32)


class BankFile(BaseModel):
    """memory.json."""

    model_config = ConfigDict(extra="forbid")
    format_version: int = FORMAT_VERSION
    entries: list[MemoryEntry] = Field(default_factory=list)
    conditioning: dict[int, list[str]] = Field(default_factory=dict)  # shot -> ids it was conditioned on
    # shot -> {id: why it was retrieved}, for shots whose memory was chosen by who they name
    retrieval: dict[int, dict[str, str]] = Field(default_factory=dict)


def _encode_embedding(vec: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def image_digest(image: np.ndarray) -> str:
    h = hashlib.sha256(repr(image.shape).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:32] or "image"


def reference_id(image: np.ndarray, name: str) -> str:
    """The id (and PNG name) a reference gets: its name and a hash of its pixels."""
    return f"ref-{_slug(name)}-{image_digest(image)[:8]}"


_DAMAGE_HINT = (
    "run `storymem render` on this folder again: it re-renders from the first shot whose memory cannot be "
    "trusted (docs/run-folder.md, Damage)"
)


class MemoryBank:
    """Open with :meth:`open`; mutate; :meth:`save`. Not safe for two writers at once."""

    def __init__(self, run_dir: Path, cfg: MemoryConfig, data: BankFile):
        self.run_dir = run_dir
        self.cfg = cfg
        self._data = data
        self._pending: dict[str, np.ndarray] = {}  # id -> image not yet written

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def open(cls, run_dir: str | os.PathLike[str], cfg: MemoryConfig | None = None) -> MemoryBank:
        """Load ``RUN_DIR/memory.json``, or create ``memory/`` and an empty memory.json."""
        run_dir = Path(run_dir)
        cfg = cfg or MemoryConfig()
        path = run_dir / MEMORY_JSON
        if not path.exists():
            (run_dir / MEMORY_DIR).mkdir(parents=True, exist_ok=True)
            bank = cls(run_dir, cfg, BankFile())
            bank.save()
            return bank
        from storymem_cli.jsonio import JsonFileError, load_json, validation_problem
        from storymem_cli.memory.bank_checks import bank_problem

        hint = f"delete {path.name} and render again: the shots that need its memory are rendered again"
        raw = load_json(path, hint=hint)
        version = raw.get("format_version") if isinstance(raw, dict) else None
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise InvalidInputError(
                f"{path}: format_version {version!r} is not one this storymem reads (up to {FORMAT_VERSION})",
                hint="upgrade storymem, or render into a new run folder",
            )
        try:
            data = BankFile.model_validate(raw)
        except ValidationError as err:
            where, message = validation_problem(err)
            raise JsonFileError(path, message, where=where, hint=hint) from None
        problem = bank_problem(data)
        if problem:
            raise JsonFileError(path, problem[1] + ": not what storymem writes", where=problem[0], hint=hint)
        return cls(run_dir, cfg, data)

    @property
    def path(self) -> Path:
        return self.run_dir / MEMORY_JSON

    # -- reading ---------------------------------------------------------------------------
    @property
    def entries(self) -> list[MemoryEntry]:
        """The whole log, in the order entries were added (evicted ones included)."""
        return list(self._data.entries)

    @property
    def conditioning(self) -> dict[int, list[str]]:
        return {k: list(v) for k, v in self._data.conditioning.items()}

    @property
    def retrieval(self) -> dict[int, dict[str, str]]:
        """shot -> {entry id: why it was retrieved}, for shots recorded with reasons."""
        return {k: dict(v) for k, v in self._data.retrieval.items()}

    def active_entries(self) -> list[MemoryEntry]:
        return [e for e in self._data.entries if e.active]

    def conditioning_entries(self) -> list[MemoryEntry]:
        """What the next shot is conditioned on: references, then sink, then window oldest -> newest."""
        active = self.active_entries()
        return [e for role in ("reference", "sink", "window") for e in active if e.role == role]

    def get(self, entry_id: str) -> MemoryEntry:
        for e in self._data.entries:
            if e.id == entry_id:
                return e
        known = ", ".join(e.id for e in self._data.entries) or "none"
        raise InvalidInputError(f"no memory entry {entry_id!r} in {self.path}", hint=f"entries: {known}")

    def load_image(self, entry: MemoryEntry) -> np.ndarray:
        """(H, W, 3) uint8 from the entry's lossless PNG."""
        if entry.id in self._pending:
            return self._pending[entry.id].copy()
        return self._read_png(entry)

    def _read_png(self, entry: MemoryEntry) -> np.ndarray:
        from PIL import Image

        path = self.run_dir / entry.file
        try:
            with Image.open(path) as img:
                image = np.asarray(img.convert("RGB"), dtype=np.uint8)
        except (OSError, SyntaxError, ValueError) as err:
            raise InvalidInputError(
                f"memory image {path} of entry {entry.id} cannot be read: {err}", hint=_DAMAGE_HINT
            ) from None
        if image_digest(image) != entry.sha256:
            # A replaced keyframe would silently change every later shot.
            raise InvalidInputError(
                f"memory image {path} does not hold the pixels {self.path.name} records for entry {entry.id} "
                "(sha256 differs): it was replaced or edited",
                hint=_DAMAGE_HINT,
            )
        return image

    def image_problem(self, entry: MemoryEntry) -> str | None:
        """Why the entry's PNG on disk cannot be used (missing, unreadable, other pixels), or None."""
        try:
            self._read_png(entry)
        except StorymemError as err:
            return err.message
        return None

    def active_embeddings(self, embedder: Embedder | None = None) -> np.ndarray:
        """(M, D) embeddings of :meth:`conditioning_entries`, for dedupe.

        With an ``embedder``, entries embedded by another embedder (by name or size), or not
        at all (references added from the command line), are embedded now from their PNGs and
        the result is stored with them (saved on the next :meth:`save`).
        """
        entries = self.conditioning_entries()
        if embedder is not None:
            stale = [e for e in entries if self._needs_embedding(e, embedder)]
            if stale:
                # One entry at a time: sizes differ (references), and a few CLIP calls are cheap.
                for e in stale:
                    vec = embedder.embed(self.load_image(e)[None])[0]
                    e.embedding, e.embedder = _encode_embedding(vec), embedder.name
        missing = [e.id for e in entries if e.embedding is None]
        if missing:
            raise StorymemError(f"memory entries {', '.join(missing)} have no embedding; pass an embedder")
        if not entries:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([e.embedding_array() for e in entries])  # type: ignore[misc]

    @staticmethod
    def _needs_embedding(entry: MemoryEntry, embedder: Embedder) -> bool:
        # An entry recorded without an embedder name is trusted if its size fits.
        vec = entry.embedding_array()
        if vec is None or vec.shape[0] != embedder.dim:
            return True
        return entry.embedder is not None and entry.embedder != embedder.name

    # -- updating --------------------------------------------------------------------------
    def _new_entry(self, image: np.ndarray, entry_id: str, **fields: object) -> MemoryEntry:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"memory image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        entry = MemoryEntry(
            id=entry_id,
            file=f"{MEMORY_DIR}/{entry_id}.png",
            width=int(image.shape[1]),
            height=int(image.shape[0]),
            sha256=image_digest(image),
            **fields,  # type: ignore[arg-type]
        )
        self._pending[entry_id] = np.ascontiguousarray(image).copy()
        self._data.entries.append(entry)
        return entry

    def add_shot_keyframes(
        self,
        shot: int,
        frames: np.ndarray,
        indices: list[int],
        embeddings: np.ndarray,
        scores: np.ndarray | None,
        novelty: np.ndarray | None = None,
        *,
        embedder: str | None = None,
        characters: list[str] | None = None,
    ) -> list[str]:
        """Add the keyframes ``indices`` of shot ``shot`` and evict to capacity; return the new ids.
        ``characters``: who the shot's prompt names, recorded on each keyframe.

        ``frames`` (N, H, W, 3) uint8 and the per-frame arrays ``embeddings`` (N, D),
        ``scores`` (N,) and ``novelty`` (N,) describe the whole shot; ``indices`` picks
        the keyframes (from :func:`select_keyframes`). No indices: the bank is unchanged.
        """
        later = [e.id for e in self._data.entries if e.added_by_shot is not None and e.added_by_shot >= shot]
        if later:
            raise StorymemError(
                f"memory already holds keyframes of shot {shot} or later ({', '.join(later)})",
                hint=f"roll the bank back first: rollback(before_shot={shot})",
            )
        n = len(frames)
        if len(embeddings) != n or (scores is not None and len(scores) != n) or (
            novelty is not None and len(novelty) != n
        ):
            raise ValueError(f"embeddings, scores and novelty must have one row per frame ({n})")
        ids: list[str] = []
        for i in indices:
            image = np.asarray(frames[i])
            n_pinned = sum(1 for e in self.active_entries() if e.role in ("reference", "sink"))
            role: Role = "sink" if n_pinned < self.cfg.sink_size and not self._sink_closed() else "window"
            entry = self._new_entry(
                image,
                f"s{shot + 1:03d}-f{int(i):03d}-{image_digest(image)[:8]}",
                source=ShotSource(shot=shot, frame=int(i)),
                role=role,
                embedding=_encode_embedding(embeddings[i]),
                embedder=embedder,
                score=None if scores is None else _finite_or_none(float(scores[i])),
                novelty=None if novelty is None else _finite_or_none(float(novelty[i])),
                added_by_shot=shot,
                characters=list(characters or []),
            )
            ids.append(entry.id)
        self._evict_to_capacity(shot)
        return ids

    def _sink_closed(self) -> bool:
        # Once a window entry exists, the sink is closed: "the first keyframes of the story",
        # not whichever keyframes arrive after a sink entry was removed by hand.
        return any(e.role == "window" for e in self._data.entries)

    def _evict_to_capacity(self, shot: int) -> None:
        while len(self.active_entries()) > self.cfg.capacity:
            window = [e for e in self.active_entries() if e.role == "window"]
            if not window:
                break  # only pinned entries left: nothing may be evicted
            window[0].evicted_by_shot = shot

    def add_reference(
        self,
        image: np.ndarray,
        name: str,
        *,
        embedding: np.ndarray | None = None,
        embedder: str | None = None,
        origin: Literal["user", "script", "series"] = "user",
        characters: list[str] | None = None,
    ) -> str:
        """Add a pinned reference image (MR2V); returns its id. Never evicted, only removed."""
        entry_id = reference_id(image, name)
        if any(e.id == entry_id for e in self._data.entries):
            raise InvalidInputError(f"reference {name!r} with this image is already in memory as {entry_id}")
        n_refs = sum(1 for e in self.active_entries() if e.role == "reference")
        if n_refs >= self.cfg.capacity:
            raise InvalidInputError(
                f"memory holds at most {self.cfg.capacity} entries and already has {n_refs} references",
                hint="remove a reference first (add-reference --remove ID)",
            )
        self._new_entry(
            image,
            entry_id,
            source=ReferenceSource(name=name, origin=origin),
            role="reference",
            embedding=None if embedding is None else _encode_embedding(embedding),
            embedder=embedder if embedding is not None else None,
            characters=list(characters or []),
        )
        return entry_id

    def user_references(self) -> list[MemoryEntry]:
        """Active references pinned with add-reference (not from a script), in order."""
        return [
            e
            for e in self.active_entries()
            if isinstance(e.source, ReferenceSource) and e.source.origin == "user"
        ]

    def remove(self, entry_id: str) -> MemoryEntry:
        """Take an entry out of the log (its PNG stays on disk)."""
        entry = self.get(entry_id)
        self._data.entries.remove(entry)
        self._pending.pop(entry_id, None)
        return entry

    def record_conditioning(self, shot: int, ids: list[str], why: dict[str, str] | None = None) -> None:
        """What shot ``shot`` was conditioned on, in order; ``why``: the reason for each id, when
        its memory was chosen by who it names (absent: the paper's memory, no reasons needed)."""
        known = {e.id for e in self._data.entries}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise ValueError(f"unknown memory ids {unknown}")
        self._data.conditioning[int(shot)] = list(ids)
        if why is not None:
            self._data.retrieval[int(shot)] = {i: why[i] for i in ids}

    def rollback(self, before_shot: int) -> None:
        """Restore the state before shot ``before_shot`` was rendered: drop entries it or later
        shots added, re-activate entries they evicted, forget their conditioning records."""
        self._data.entries = [
            e for e in self._data.entries if e.added_by_shot is None or e.added_by_shot < before_shot
        ]
        for e in self._data.entries:
            if e.evicted_by_shot is not None and e.evicted_by_shot >= before_shot:
                e.evicted_by_shot = None
        self._data.conditioning = {k: v for k, v in self._data.conditioning.items() if k < before_shot}
        self._data.retrieval = {k: v for k, v in self._data.retrieval.items() if k < before_shot}
        live = {e.id for e in self._data.entries}
        self._pending = {k: v for k, v in self._pending.items() if k in live}

    # -- saving ----------------------------------------------------------------------------
    def to_json(self) -> str:
        data = self._data.model_dump(mode="json")
        # Written only when used: a story without characters keeps memory.json as it always was.
        for entry in data["entries"]:
            if not entry["characters"]:
                del entry["characters"]
        if not data["retrieval"]:
            del data["retrieval"]
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

    def save(self) -> None:
        """PNGs first, then memory.json through a temp file and ``os.replace`` (atomic)."""
        (self.run_dir / MEMORY_DIR).mkdir(parents=True, exist_ok=True)
        for entry_id, image in self._pending.items():
            entry = self.get(entry_id)
            target = self.run_dir / entry.file
            # Content-addressed name: an existing file has these pixels, unless it was damaged.
            if not target.exists() or self.image_problem(entry):
                _write_png(target, image)
        _atomic_write_text(self.path, self.to_json())
        self._pending.clear()


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        Image.fromarray(image).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
