"""Finding weights on this machine: local folders and the Hugging Face cache, never a download
(`storymem download` fetches them, from the description here: models/downloads.py).

Every missing piece is reported as :class:`MissingWeightsError` naming the repo, the file and the
command that fetches it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from storymem_cli.errors import MissingWeightsError

@dataclass(frozen=True)
class Component:
    """A subfolder of a diffusers Wan repo the loader reads: ``from_pretrained(repo, subfolder=folder)``
    opens ``config`` first, then (``weights``) the weight files, sharded with an index or whole."""

    folder: str
    config: str
    weights: bool = True

    @property
    def pattern(self) -> str:
        """What fetches it from the hub: everything in its folder (config, weights, index, tokenizer files)."""
        return f"{self.folder}/*"


TOKENIZER = Component("tokenizer", "tokenizer_config.json", weights=False)
TEXT_ENCODER = Component("text_encoder", "config.json")
VAE = Component("vae", "config.json")
SCHEDULER = Component("scheduler", "scheduler_config.json", weights=False)
EXPERTS = (Component("transformer", "config.json"), Component("transformer_2", "config.json"))  # high, low noise
# The one description of what a story model loads, shared by the loader's checks (check_components),
# `storymem download` (models/downloads.py) and `storymem doctor`: the T2V repo's text encoder, VAE and
# tokenizer are the I2V repo's, so only its experts are read.
I2V_COMPONENTS: tuple[Component, ...] = (TOKENIZER, TEXT_ENCODER, VAE, SCHEDULER, *EXPERTS)
T2V_COMPONENTS: tuple[Component, ...] = EXPERTS
REPO_FILES = ("model_index.json",)  # not read by the loader (it loads per subfolder); tells a diffusers repo
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def repo_patterns(components: tuple[Component, ...]) -> tuple[str, ...]:
    """The hub patterns that fetch ``components`` of a repo (what `hf download --include` takes)."""
    return (*REPO_FILES, *(c.pattern for c in components))


def download_command(repo_id: str, include: str | tuple[str, ...] | None = None) -> str:
    """The `hf download` line that fetches ``include`` (one pattern or several) of ``repo_id``:
    `--include` takes one pattern, so it is repeated per pattern (a second value would be read as a
    file name, and with file names `--include` is ignored)."""
    patterns = (include,) if isinstance(include, str) else (include or ())
    return f"hf download {repo_id}" + "".join(f' --include "{p}"' for p in patterns)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection within ``timeout`` seconds (False when
    HF_HUB_OFFLINE is set). Asked before a download, so that a machine without network hears at
    once that the weights are missing instead of waiting through huggingface_hub's retries (~40 s)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "", port), timeout=timeout):
            return True
    except OSError:  # no route, no DNS, refused, timed out
        return False


def is_repo_id(source: str) -> bool:
    return source.count("/") == 1 and not Path(source).expanduser().exists() and not source.startswith((".", "/", "~"))


def locate_source(source: str, base: Path | None = None) -> tuple[Path, str | None]:
    """(local folder, repo id or None) for a hub repo id or a folder (relative to ``base``)."""
    if is_repo_id(source) and base is None:
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return Path(snapshot_download(source, local_files_only=True)), source
        except LocalEntryNotFoundError:
            raise MissingWeightsError(
                f"{source} is not in the Hugging Face cache ({constants.HF_HUB_CACHE})",
                hint=f"download it with: storymem download (this repo alone: {download_command(source)}); "
                "or pass a local model folder",
            ) from None
    path = (base / source) if base is not None else Path(source).expanduser()
    if not path.is_dir():
        raise MissingWeightsError(f"model folder {path} does not exist", hint="check the --model path")
    return path, None


def check_components(folder: Path, components: tuple[Component, ...], repo_id: str | None) -> None:
    """Every component has its config and all its weight files (shards of an index included)."""
    for part in components:
        sub = folder / part.folder
        if not (sub / part.config).is_file():
            _missing(sub / part.config, repo_id, part.pattern)
        if not part.weights:
            continue
        for shard in index_shards(sub):
            if not (sub / shard).is_file():
                _missing(sub / shard, repo_id, part.pattern)
        if not any(p.suffix in WEIGHT_SUFFIXES for p in sub.iterdir()):
            _missing(sub / "*.safetensors", repo_id, part.pattern)


def index_shards(folder: Path) -> list[str]:
    """The shard files the ``*.index.json`` files of ``folder`` name (none without an index)."""
    shards: set[str] = set()
    for index in folder.glob("*.index.json"):
        shards.update(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
    return sorted(shards)


def _missing(path: Path, repo_id: str | None, include: str) -> None:
    hint = (
        f"download it with: storymem download (this part alone: {download_command(repo_id, include)})"
        if repo_id
        else "copy the complete model folder"
    )
    raise MissingWeightsError(f"missing weight file {path}", hint=hint)

