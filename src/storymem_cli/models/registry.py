"""Presets resolved to weights, and the loaded story model (the ``models + pipeline -> render`` contract).

``resolve_preset`` is torch-free; ``load_story_model`` imports the heavy stack.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from storymem_cli.errors import InvalidInputError
from storymem_cli.jsonio import load_json
from storymem_cli.models.presets import (
    A14B,
    PRESETS,
    STORYMEM_LORA_REPO,
    TOY,
    ModelPreset,
)
from storymem_cli.models.runtime import ModelOptions, RuntimeOptions
from storymem_cli.models.tiny import MODEL_FILE

if TYPE_CHECKING:
    from storymem_cli.models.story_model import StoryModel

__all__ = ["ModelOptions", "ModelPreset", "RuntimeOptions", "load_story_model", "preset_names", "resolve_preset"]




def preset_names() -> list[str]:
    return [*PRESETS, "auto"]


def resolve_preset(name: str) -> ModelPreset:
    """A preset by name ("toy", "tiny", "wan2.2-a14b", "auto") or a model directory on disk.

    "auto" is wan2.2-a14b when a CUDA GPU is present, else toy (trained, ships with the package). A directory is either a saved
    storymem model (``storymem_model.json``) or holds ``i2v/`` and ``t2v/`` diffusers repos (and
    optionally ``lora/``) for Wan2.2 A14B.
    """
    if name == "auto":
        from storymem_cli.models.cuda_probe import cuda_available

        return A14B if cuda_available() else TOY
    if name in PRESETS:
        return PRESETS[name]
    folder = Path(name).expanduser()
    if folder.is_dir():
        return _preset_from_folder(folder.resolve())
    raise InvalidInputError(
        f"unknown model {name!r}: not a preset and not a folder",
        hint=f"use one of {', '.join(preset_names())}, or the path of a model folder",
    )


def _preset_from_folder(folder: Path) -> ModelPreset:
    from storymem_cli.models.folder_checks import check_model_folder

    check_model_folder(folder)  # every JSON file, before diffusers parses them without limits
    record_file = folder / MODEL_FILE
    if record_file.is_file():
        try:
            data = load_json(record_file)
            preset = ModelPreset.model_validate(data["preset"])
        except (ValueError, KeyError, TypeError) as err:
            raise InvalidInputError(f"{record_file} is not a valid storymem model file: {err}") from None
        sources = {
            key: str(folder / value) if value and not Path(value).is_absolute() and "/" not in value else value
            for key, value in (("i2v_source", preset.i2v_source), ("t2v_source", preset.t2v_source),
                               ("lora_source", preset.lora_source))
        }  # fmt: skip
        return preset.model_copy(update={**sources, "builtin": False})
    if (folder / "i2v").is_dir() and (folder / "t2v").is_dir():
        lora = folder / "lora"
        return A14B.model_copy(
            update={
                "i2v_source": str(folder / "i2v"),
                "t2v_source": str(folder / "t2v"),
                "lora_source": str(lora) if lora.is_dir() else STORYMEM_LORA_REPO,
            }
        )
    raise InvalidInputError(
        f"{folder} is not a model folder: it has neither {MODEL_FILE} nor i2v/ and t2v/ subfolders",
        hint="see docs/models.md for the folder layout",
    )


def load_story_model(preset: ModelPreset, runtime: RuntimeOptions | None = None) -> StoryModel:
    """Locate every weight file (failing early with what to download), then load the shared parts.
    ``runtime``: how to run it; a ``ModelOptions`` also chooses the LoRAs (else the preset's)."""
    from storymem_cli.models.story_model import StoryModel

    return StoryModel.load(preset, ModelOptions.of(runtime))
