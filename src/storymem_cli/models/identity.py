"""Which weights a render uses, as a short id for the resume fingerprint.

The settings name a model the way the user did ("toy", a folder, a hub id), which stays the same
when the weights behind the name change: new packaged toy weights, a retrained model folder, a
newer hub snapshot, a LoRA file overwritten by `storymem train`. Shots rendered with other
weights must not be kept, so each shot's fingerprint carries this id too (render/resume.py).

Cheap on purpose, because every render and every dry run computes it before loading anything:
- the packaged toy weights: their content hash (12 MB; the same hash names their cache folder);
- tiny: the hash of the code config it is built from (its cache folder's name);
- a local folder or file: every file's relative path, size and modification time, as `make`
  and `rsync` judge files. A copy that does not keep modification times (``cp`` without ``-p``)
  therefore renders again: the safe side, since hashing tens of gigabytes of A14B weights on
  every run is not an option;
- a hub repo id: the commit of its snapshot in the local Hugging Face cache (no network), or
  the id itself when it is not cached (loading then fails with the download command anyway).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from storymem_cli.errors import MissingWeightsError
from storymem_cli.models.presets import TINY, TOY, ModelPreset
from storymem_cli.models.weights import is_repo_id, locate_source


def file_listing(path: Path) -> list[list[str | int]]:
    """[relative path, size, mtime_ns] of ``path`` itself or of every file under it, sorted."""
    if path.is_file():
        stat = path.stat()
        return [[path.name, stat.st_size, stat.st_mtime_ns]]
    rows: list[list[str | int]] = []
    for file in sorted(path.rglob("*")):
        if file.is_file():  # follows symlinks: a Hugging Face snapshot links into blobs/
            stat = file.stat()
            rows.append([file.relative_to(path).as_posix(), stat.st_size, stat.st_mtime_ns])
    return rows


def source_identity(source: str) -> object:
    """What one weight source (folder, file, or hub repo id) currently resolves to."""
    path = Path(source).expanduser()
    if path.exists():
        return {"files": file_listing(path)}
    if is_repo_id(source):
        try:
            snapshot, _ = locate_source(source)  # snapshots/<commit> in the local cache, never a download
        except MissingWeightsError:
            return {"repo": source}
        return {"repo": source, "commit": snapshot.name}
    return {"missing": source}


def builtin_identity(preset: ModelPreset) -> str:
    if preset.name == TOY.name:
        from storymem_cli.models.toy import toy_weights_hash, toy_weights_present

        return f"toy-{toy_weights_hash()}" if toy_weights_present() else "toy-missing"
    if preset.name == TINY.name:
        from storymem_cli.models.tiny import tiny_config_hash

        return f"tiny-{tiny_config_hash()}"
    raise ValueError(f"no identity rule for the built-in preset {preset.name!r}")


def weights_identity(preset: ModelPreset, lora: str | None = None, style_loras: Iterable[str] = ()) -> str:
    """A digest of every weight source a render with these settings loads (see the module doc)."""
    if preset.builtin:
        model: object = builtin_identity(preset)
    else:
        model = {role: source_identity(source) for role, source in
                 (("i2v", preset.i2v_source), ("t2v", preset.t2v_source))}  # fmt: skip
    lora_source = preset.lora_for(lora)
    payload = {
        "model": model,
        "lora": source_identity(lora_source) if lora_source is not None else None,
        "style_loras": [source_identity(path) for path in style_loras],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
