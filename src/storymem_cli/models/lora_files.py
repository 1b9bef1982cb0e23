"""The StoryMem LoRA's files: where they are, how they are read, what is refused (SPEC 5).

No torch at import time: the CLI can name these without paying for it.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from storymem_cli.errors import InvalidInputError

if TYPE_CHECKING:
    import torch

# Variant -> folder in the Kevin-thu/StoryMem hub repo (SPEC 5).
STORYMEM_VARIANT_DIRS = {"mi2v": "Wan2.2-MI2V-A14B", "mm2v": "Wan2.2-MM2V-A14B"}
STORYMEM_HUB_REPO = "Kevin-thu/StoryMem"
EXPERT_FILE_STEMS = {"transformer": "backbone_high_noise", "transformer_2": "backbone_low_noise"}
_SUFFIXES = (".safetensors", ".pth")  # preference order: safetensors cannot run code
MAX_LISTED = 5  # how many offending keys an error message quotes


def lora_variant(continuation: str) -> str:
    """The StoryMem LoRA variant a continuation mode loads: ``none`` (memory only) uses the MI2V one."""
    return "mm2v" if continuation == "mm2v" else "mi2v"


def storymem_hub_files(variant: str) -> tuple[str, str]:
    """The variant's two files as the hub repo holds them (high-noise expert first): what
    `storymem download` fetches and the loader opens (``.safetensors``, the preferred suffix)."""
    folder = STORYMEM_VARIANT_DIRS[variant]
    return tuple(f"{folder}/{stem}{_SUFFIXES[0]}" for stem in EXPERT_FILE_STEMS.values())  # type: ignore[return-value]


class LoraError(InvalidInputError):
    """A LoRA file that cannot be used as asked: which file, which key, what is wrong."""


def find_storymem_lora_files(path: str | Path, variant: str) -> tuple[Path, Path]:
    """``(high_noise_file, low_noise_file)`` of the StoryMem LoRA ``variant`` under ``path``.

    ``path`` is one of the two files, a variant folder (``Wan2.2-MI2V-A14B/``) or the
    repo root holding both variant folders. ``.safetensors`` wins over ``.pth``.
    """
    if variant not in STORYMEM_VARIANT_DIRS:
        raise LoraError(
            f"unknown StoryMem LoRA variant {variant!r}",
            hint=f"use one of: {', '.join(STORYMEM_VARIANT_DIRS)}",
        )
    root = Path(path).expanduser()
    if root.is_file():
        if not any(root.name == stem + s for stem in EXPERT_FILE_STEMS.values() for s in _SUFFIXES):
            raise LoraError(
                f"{root}: not a StoryMem LoRA file name",
                hint="expected backbone_high_noise.safetensors / backbone_low_noise.safetensors (or .pth)",
            )
        root = root.parent
    if not root.is_dir():
        raise LoraError(
            f"StoryMem LoRA path {root} does not exist",
            hint=_download_hint(variant),
        )
    other = {d: v for v, d in STORYMEM_VARIANT_DIRS.items() if v != variant}
    if root.resolve().name in other:
        # the MI2V and MM2V files have the same keys and shapes: only the folder tells them apart
        raise LoraError(
            f"{root} holds the {other[root.resolve().name]} variant of the StoryMem LoRA, "
            f"but {variant} continuation needs {STORYMEM_VARIANT_DIRS[variant]}",
            hint="point to the repo root or the matching variant folder",
        )
    candidates = [root, root / STORYMEM_VARIANT_DIRS[variant]]
    for folder in candidates:
        high = _pick_file(folder, EXPERT_FILE_STEMS["transformer"])
        low = _pick_file(folder, EXPERT_FILE_STEMS["transformer_2"])
        if high and low:
            return high, low
        if high or low:
            missing = EXPERT_FILE_STEMS["transformer_2" if high else "transformer"]
            raise LoraError(
                f"{folder}: found {(high or low).name} but no {missing}.safetensors or {missing}.pth",
                hint="both experts need their file; " + _download_hint(variant),
            )
    looked = " and ".join(str(c) for c in candidates)
    raise LoraError(
        f"no backbone_high_noise / backbone_low_noise .safetensors or .pth in {looked}",
        hint=_download_hint(variant),
    )


def _pick_file(folder: Path, stem: str) -> Path | None:
    for suffix in _SUFFIXES:
        candidate = folder / (stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def _download_hint(variant: str) -> str:
    sub = STORYMEM_VARIANT_DIRS.get(variant, STORYMEM_VARIANT_DIRS["mi2v"])
    return (
        f"download it with: storymem download --continuation {variant if variant in STORYMEM_VARIANT_DIRS else 'mi2v'} "
        "(the Hugging Face cache, where a render without --lora looks), or "
        f"hf download {STORYMEM_HUB_REPO} --include \"{sub}/*\" --local-dir DIR and pass --lora DIR"
    )


def read_lora_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a ``.safetensors`` file, or of a ``.pth`` loaded with ``weights_only=True``."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise LoraError(f"LoRA file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                metadata = dict(f.metadata() or {})
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no items())
        except SafetensorError as e:
            raise LoraError(f"{path}: not a readable .safetensors file ({e})") from e
        return tensors, metadata
    if suffix in (".pth", ".pt", ".bin"):
        import pickle

        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise LoraError(
                f"{path}: refused: this pickle needs more than tensors to load (weights_only=True)",
                hint="a LoRA file holds only tensors; convert it to .safetensors from a source you trust",
            ) from e
        except (RuntimeError, EOFError, OSError) as e:
            raise LoraError(f"{path}: not a readable PyTorch file ({e})") from e
        if not isinstance(obj, Mapping):
            raise LoraError(f"{path}: holds a {type(obj).__name__}, expected a dict of tensors")
        bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
        if bad:
            raise LoraError(f"{path}: entries that are not tensors: {quote_keys(bad)}")
        return dict(obj), {}
    raise LoraError(f"{path}: unsupported LoRA file type {suffix!r}", hint="use .safetensors or .pth")


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, computed once per (path, size, mtime): the experts are reloaded
    (and the ~2.3 GB LoRA files re-reported) every time the model swaps T2V and M2V."""
    stat = Path(path).stat()
    return _sha256_cached(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def quote_keys(items: Sequence[str]) -> str:
    shown = ", ".join(repr(i) for i in items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")
