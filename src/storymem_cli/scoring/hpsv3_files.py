"""Where the HPSv3 reward model's files come from (torch-free: download, doctor and the scorer share it).

HPSv3 is Qwen2-VL-7B-Instruct with a reward head, trained and saved whole into one safetensors file.
The scorer needs that file plus only the *small* files of the base model (its config, tokenizer and
image processor); the base model's own 16 GB of weights are never read.

Where the scorer looks (never downloading):

- ``weights`` None: both from the Hugging Face cache (``$HF_HOME/hub``), as ``hf download`` puts them.
- ``weights`` a file: that checkpoint; the base files from the same folder when its ``config.json``
  is there, else from the cache.
- ``weights`` a folder: its ``HPSv3.safetensors``; the base files from the same folder when its
  ``config.json`` is there, else from the cache. One folder for everything is what
  ``hf download ... --local-dir FOLDER`` of both repos makes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from storymem_cli.errors import MissingWeightsError

HPSV3_REPO = "MizzenAI/HPSv3"  # the authors' checkpoint repo
HPSV3_CHECKPOINT = "HPSv3.safetensors"  # the whole reward model (base weights + head)
HPSV3_BASE_REPO = "Qwen/Qwen2-VL-7B-Instruct"  # hpsv3's config/HPSv3_7B.yaml: model_name_or_path
# The base model's files the scorer opens (tests/memory/test_hpsv3_model.py records the opens):
# architecture, tokenizer, image processor, chat template.
HPSV3_BASE_FILES: tuple[str, ...] = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
    "chat_template.json",
)


@dataclass(frozen=True)
class HPSv3Files:
    checkpoint: Path  # HPSv3.safetensors
    base: Path  # a folder holding every name of HPSV3_BASE_FILES


def download_commands(checkpoint: bool = True, base: bool = True, local_dir: Path | None = None) -> list[str]:
    """The ``hf download`` lines (huggingface_hub 1.x) that fetch the checkpoint and/or the base files:
    one ``--include`` per file (the flag takes one value; a second would be read as a file name)."""
    where = f' --local-dir "{local_dir}"' if local_dir is not None else ""
    lines = []
    if checkpoint:
        lines.append(f'hf download {HPSV3_REPO} --include "{HPSV3_CHECKPOINT}"{where}')
    if base:
        lines.append(f"hf download {HPSV3_BASE_REPO}" + "".join(f' --include "{n}"' for n in HPSV3_BASE_FILES) + where)
    return lines


def locate_hpsv3(weights: str | os.PathLike[str] | None = None) -> HPSv3Files:
    """The checkpoint and base-model folder the scorer will read; MissingWeightsError names what is missing."""
    checkpoint, folder = _checkpoint(weights)
    base = folder if folder is not None and (folder / "config.json").is_file() else _cached_base()
    missing = [name for name in HPSV3_BASE_FILES if not (base / name).is_file()]
    if missing:
        local = base if base == folder else None
        raise MissingWeightsError(
            f"HPSv3 needs the small files of its base model {HPSV3_BASE_REPO}; missing in {base}: {', '.join(missing)}",
            hint="download them (a few MB, not the base model's weights) with: "
            + "; ".join(download_commands(checkpoint=False, local_dir=local)),
        )
    return HPSv3Files(checkpoint=checkpoint, base=base)


def _checkpoint(weights: str | os.PathLike[str] | None) -> tuple[Path, Path | None]:
    """(checkpoint file, the user's folder or None) for the ``weights`` argument."""
    if weights is None:
        hit = _cached(HPSV3_REPO, HPSV3_CHECKPOINT)
        if hit is None:
            raise MissingWeightsError(
                f"the HPSv3 checkpoint {HPSV3_CHECKPOINT} of {HPSV3_REPO} is not in the Hugging Face cache "
                f"({_cache_dir()})",
                hint=f"download it (16.6 GB) with: {download_commands(base=False)[0]}; "
                "or choose the aesthetic scorer laion or none",
            )
        return hit, None
    path = Path(weights).expanduser()
    if path.is_dir():
        if not (path / HPSV3_CHECKPOINT).is_file():
            raise MissingWeightsError(
                f"HPSv3 checkpoint not found: {path / HPSV3_CHECKPOINT}",
                hint=f"download it there with: {download_commands(base=False, local_dir=path)[0]}",
            )
        return path / HPSV3_CHECKPOINT, path
    if not path.is_file():
        raise MissingWeightsError(
            f"HPSv3 checkpoint not found: {path}",
            hint=f"download it with: {download_commands(base=False)[0]}; then pass the file or its folder",
        )
    return path, path.parent


def _cached_base() -> Path:
    """The snapshot folder of HPSV3_BASE_REPO in the Hugging Face cache (its files may still be missing)."""
    for name in HPSV3_BASE_FILES:  # any one cached file names the snapshot folder
        hit = _cached(HPSV3_BASE_REPO, name)
        if hit is not None:
            return hit.parent
    raise MissingWeightsError(
        f"HPSv3 needs the small files of its base model {HPSV3_BASE_REPO}, and none is in the Hugging Face "
        f"cache ({_cache_dir()})",
        hint="download them (a few MB, not the base model's weights) with: " + download_commands(checkpoint=False)[0],
    )


def _cached(repo_id: str, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo_id, filename)
    return Path(hit) if isinstance(hit, str) else None


def _cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)
