"""Finding weights on this machine: local folders and the Hugging Face cache, never a download.

Every missing piece is reported as :class:`MissingWeightsError` naming the repo, the file and the
command that fetches it.
"""

from __future__ import annotations

import json
from pathlib import Path

from storymem_cli.errors import MissingWeightsError

# What each role needs from a diffusers-format Wan repo: subfolder -> config file inside it.
I2V_COMPONENTS = {
    "tokenizer": "tokenizer_config.json",
    "text_encoder": "config.json",
    "vae": "config.json",
    "scheduler": "scheduler_config.json",
    "transformer": "config.json",
    "transformer_2": "config.json",
}
T2V_COMPONENTS = {"transformer": "config.json", "transformer_2": "config.json"}  # the rest is shared with I2V
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def download_command(repo_id: str, include: str | None = None) -> str:
    extra = f' --include "{include}"' if include else ""
    return f"hf download {repo_id}{extra}   (older clients: huggingface-cli download {repo_id}{extra})"


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
                hint=f"download it with: {download_command(source)}; or pass a local model folder",
            ) from None
    path = (base / source) if base is not None else Path(source).expanduser()
    if not path.is_dir():
        raise MissingWeightsError(f"model folder {path} does not exist", hint="check the --model path")
    return path, None


def check_components(folder: Path, components: dict[str, str], repo_id: str | None) -> None:
    """Every component has its config and all its weight files (shards of an index included)."""
    for sub, config_name in components.items():
        config = folder / sub / config_name
        if not config.is_file():
            _missing(config, repo_id, f"{sub}/*")
        if sub in ("tokenizer", "scheduler"):
            continue
        for index in (folder / sub).glob("*.index.json"):
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            for shard in shards:
                if not (folder / sub / shard).is_file():
                    _missing(folder / sub / shard, repo_id, f"{sub}/*")
        if not any(p.suffix in WEIGHT_SUFFIXES for p in (folder / sub).iterdir()):
            _missing(folder / sub / "*.safetensors", repo_id, f"{sub}/*")


def _missing(path: Path, repo_id: str | None, include: str) -> None:
    hint = f"download it with: {download_command(repo_id, include)}" if repo_id else "copy the complete model folder"
    raise MissingWeightsError(f"missing weight file {path}", hint=hint)

