"""Checkpoints that survive a kill at any instant.

    OUT/checkpoints/step-00000200/   weights.safetensors (trainable tensors), trainer.pt (optimiser,
                                     RNG states), state.json (step, loss, elapsed time, settings)
    OUT/checkpoints/latest.json      {"step": 200, "dir": "step-00000200"}

A checkpoint is written into a temporary folder and renamed into place; only then is ``latest.json``
replaced (temp file + rename). A reader follows ``latest.json`` and so only ever sees complete
checkpoints; older ones are pruned after the pointer moves.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

CHECKPOINTS = "checkpoints"
LATEST = "latest.json"
WEIGHTS = "weights.safetensors"
TRAINER = "trainer.pt"
STATE = "state.json"


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    _fsync_file(tmp)
    os.replace(tmp, path)


def save_checkpoint(
    out: Path, step: int, weights: dict[str, torch.Tensor], trainer: dict[str, Any], state: dict, keep: int
) -> Path:
    from safetensors.torch import save_file

    root = out / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    final = root / name
    tmp = root / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({k: v.detach().to("cpu").contiguous() for k, v in weights.items()}, str(tmp / WEIGHTS))
    torch.save(trainer, tmp / TRAINER)
    (tmp / STATE).write_text(json.dumps({**state, "step": step}, indent=1) + "\n", encoding="utf-8")
    for f in (WEIGHTS, TRAINER, STATE):
        _fsync_file(tmp / f)
    if final.exists():  # the same step saved again (e.g. a stage that ran no step): replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    _write_json_atomic(root / LATEST, {"step": step, "dir": name})
    _prune(root, keep, current=name)
    return final


def _prune(root: Path, keep: int, current: str) -> None:
    done = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))
    for old in [p for p in done if p.name != current][: max(0, len(done) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
    for stray in root.glob(".step-*.tmp-*"):  # a folder a killed run was writing
        shutil.rmtree(stray, ignore_errors=True)


def write_folder_atomic(dest: Path, write) -> Path:
    """Call ``write(tmp)`` to fill a temporary folder beside ``dest``, then swap it in for ``dest``.

    A reader sees the old folder or the new one; a kill during ``write`` leaves only a temp folder.
    """
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    write(tmp)
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def latest_checkpoint(out: Path) -> Path | None:
    pointer = out / CHECKPOINTS / LATEST
    if not pointer.is_file():
        return None
    folder = out / CHECKPOINTS / json.loads(pointer.read_text(encoding="utf-8"))["dir"]
    return folder if (folder / STATE).is_file() else None


def load_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict]:
    from storymem_cli.jsonio import load_json
    from storymem_cli.models.safe_load import safetensors_load, torch_load

    hint = f"delete {folder} to resume from the checkpoint before it (or the run from scratch)"
    weights = safetensors_load(folder / WEIGHTS, what="checkpoint weights", hint=hint)
    trainer = torch_load(folder / TRAINER, what="checkpoint optimiser state", hint=hint)
    state = load_json(folder / STATE, hint=hint)
    return weights, trainer, state
