"""A model folder checked before anything loads from it (``--model DIR``, ``train --init DIR``).

diffusers and transformers parse the folder's JSON files themselves (model_index.json, each
component's config.json, the tokenizer's files) with no depth limit, so every JSON file of the
folder is read once here through storymem's reader (storymem_cli/jsonio.py) first. A config that
asks for code shipped with the model (``auto_map``, the hub's remote code) is refused: storymem
never passes ``trust_remote_code=True``, so no such code runs, and without it the folder cannot
load as its author meant. Torch-free.
"""

from __future__ import annotations

from pathlib import Path

from storymem_cli.errors import InvalidInputError
from storymem_cli.jsonio import load_json

MAX_FILES = 200  # a Wan2.2 folder has ~30 JSON files; more is not a model folder
_HINT = "the model folder is damaged or not a storymem/diffusers model folder: copy it again from its source"


def check_model_folder(folder: Path, option: str = "--model") -> None:
    json_files = sorted(p for pattern in ("*.json", "*/*.json", "*/*/*.json") for p in folder.glob(pattern))
    for path in json_files[:MAX_FILES]:
        if not path.is_file():
            continue
        data = load_json(path, hint=_HINT)
        if isinstance(data, dict) and ("auto_map" in data or data.get("trust_remote_code")):
            raise InvalidInputError(
                f"{option} {folder}: {path.relative_to(folder)} asks to run code shipped with the model "
                "(auto_map); storymem never runs code from a model folder (trust_remote_code stays False), "
                "so this folder is refused",
                hint="use a model folder whose components are standard diffusers/transformers classes",
            )
