"""CLIP image towers from open_clip: architecture by name, weights by tag, file or folder.

One code path for real and test models: a model is an open_clip config dict
(a built-in name such as ``ViT-B-32-quickgelu``, or a tiny config registered
here) plus an optional checkpoint. Only the image tower is kept.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from storymem_cli.errors import InvalidInputError, MissingWeightsError
from storymem_cli.models.weights import hub_reachable

if TYPE_CHECKING:
    import torch

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP normalisation (SPEC 9)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Tiny random CLIPs for tests and CPU smoke runs: same classes as the real models,
# a few thousand parameters. Image size 32 keeps a 81-frame shot cheap on one core.
TINY_CLIP_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny-clip": {
        "embed_dim": 32,
        "quick_gelu": True,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
    },
}

# Checkpoint file names looked for, in this order, when weights point at a folder.
_CHECKPOINT_NAMES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "model.safetensors",
    "pytorch_model.bin",
)
_CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_OPEN_CLIP_HF_FILE = "open_clip_pytorch_model.bin"  # open_clip's file name when a tag's hf_hub names a repo only
# Where open_clip gets the tags storymem uses by default (its get_pretrained_cfg, checked in
# tests/memory/test_clip_resize.py), so that a missing checkpoint is reported without importing
# open_clip and torch first (~5 s on a loaded machine).
KNOWN_TAGS = {
    ("ViT-L-14-quickgelu", "openai"): {"hf_hub": "timm/vit_large_patch14_clip_224.openai/"},  # LAION aesthetic
    ("ViT-B-32", "openai"): {"hf_hub": "timm/vit_base_patch32_clip_224.openai/"},
    ("ViT-B-32-quickgelu", "openai"): {"hf_hub": "timm/vit_base_patch32_clip_224.openai/"},  # memory embedder
}


def clip_config(model_name: str) -> dict[str, Any]:
    """The open_clip config dict of a built-in or tiny model name."""
    import copy

    if model_name in TINY_CLIP_CONFIGS:
        return copy.deepcopy(TINY_CLIP_CONFIGS[model_name])
    import open_clip

    cfg = open_clip.get_model_config(model_name)
    if cfg is None:
        raise InvalidInputError(
            f"unknown CLIP model {model_name!r}",
            hint="use an open_clip model name such as ViT-B-32-quickgelu or ViT-L-14-quickgelu",
        )
    return cfg


def _checkpoint_in_dir(folder: Path) -> Path | None:
    for name in _CHECKPOINT_NAMES:
        if (folder / name).is_file():
            return folder / name
    # A folder with exactly one weight file is unambiguous; several is the user's to choose.
    files = sorted(p for p in folder.iterdir() if p.suffix in _CHECKPOINT_SUFFIXES and p.is_file())
    return files[0] if len(files) == 1 else None


def resolve_clip_checkpoint(model_name: str, weights: str | os.PathLike[str], *, what: str) -> Path:
    """Turn a weights argument (pretrained tag, ``hf-hub:org/repo``, file or folder) into a local file.

    ``what`` names the model in error messages (e.g. "memory embedder (CLIP ViT-B/32)").
    Downloads go through open_clip / huggingface_hub into the Hugging Face cache; with no
    network (or ``HF_HUB_OFFLINE=1``) and nothing cached this raises MissingWeightsError
    saying what to fetch and where to put it.
    """
    text = os.fspath(weights)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        found = _checkpoint_in_dir(path)
        if found is None:
            raise MissingWeightsError(
                f"{what}: no checkpoint in folder {path}",
                hint=f"put one of {', '.join(_CHECKPOINT_NAMES)} there, or pass the file itself",
            )
        return found
    if text.startswith("hf-hub:"):
        return _download_from_hub(text[len("hf-hub:") :], what=what)
    looks_like_path = os.sep in text or text.endswith(_CHECKPOINT_SUFFIXES) or text.startswith(".")
    if looks_like_path:
        raise MissingWeightsError(f"{what}: weights file not found: {path}")

    cfg = KNOWN_TAGS.get((model_name, text))
    if cfg is None:
        import open_clip

        cfg = open_clip.get_pretrained_cfg(model_name, text)
        if not cfg:
            tags = open_clip.list_pretrained_tags_by_model(model_name)
            raise InvalidInputError(
                f"{what}: {text!r} is neither a file, a folder nor a pretrained tag of {model_name}",
                hint=f"known tags: {', '.join(tags) or 'none'}; or pass a local checkpoint file or folder",
            )
    cached = cached_pretrained(cfg)  # the cache first: no network, and for known tags no open_clip import
    if cached is not None:
        return cached

    repo = cfg.get("hf_hub", "").split("/")
    repo_id = "/".join(repo[:2]) if len(repo) >= 2 else ""

    def missing(reason: str) -> MissingWeightsError:
        where = f"https://huggingface.co/{repo_id}" if repo_id else cfg.get("url", "its release page")
        return MissingWeightsError(
            f"{what}: weights {model_name}/{text} are not on this machine and {reason}",
            hint=(
                f"download them from {where} while online (they go to the Hugging Face cache, "
                f"$HF_HOME/hub, ~/.cache/huggingface/hub by default), or pass a local checkpoint "
                f"file or folder instead of the tag {text!r}"
            ),
        )

    if not hub_reachable():  # say so now, not after huggingface_hub's retries (~40 s)
        raise missing("the Hugging Face hub cannot be reached (offline, or HF_HUB_OFFLINE is set)")
    import open_clip

    try:
        return Path(open_clip.download_pretrained(open_clip.get_pretrained_cfg(model_name, text)))
    except Exception as err:  # huggingface_hub / urllib raise many types; all mean "not here"
        raise missing(f"could not be downloaded ({type(err).__name__})") from None


def cached_pretrained(cfg: dict) -> Path | None:
    """The file open_clip would download for ``cfg``, when the Hugging Face cache already has it.
    Mirrors open_clip.pretrained.download_pretrained: ``hf_hub`` is ``org/repo/`` (default file
    name) or ``org/repo/file``, and a .safetensors twin is preferred."""
    from huggingface_hub import try_to_load_from_cache

    if "file" in cfg:
        return Path(cfg["file"])
    repo_id, candidates = open_clip_hub_files(cfg)
    if not repo_id:
        return None
    for name in candidates:
        hit = try_to_load_from_cache(repo_id, name)
        if isinstance(hit, str):
            return Path(hit)
    return None


def open_clip_hub_files(cfg: dict) -> tuple[str, tuple[str, ...]]:
    """(repo id, file names in open_clip's order of preference) of a pretrained config's ``hf_hub``:
    ``org/repo/`` (open_clip's default name) or ``org/repo/file``, its .safetensors twin first.
    `storymem download` fetches the first; ``("", ())`` when the config names no hub repo."""
    repo_id, filename = os.path.split(cfg.get("hf_hub", ""))
    if not repo_id:
        return "", ()
    filename = filename or _OPEN_CLIP_HF_FILE
    twin = filename.replace(".bin", ".safetensors").replace("pytorch_model", "model")
    return repo_id, tuple(dict.fromkeys((twin, filename)))


def _download_from_hub(repo_id: str, *, what: str) -> Path:
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    for name in _CHECKPOINT_NAMES[:3]:
        hit = try_to_load_from_cache(repo_id, name)
        if isinstance(hit, str):
            return Path(hit)
    if not hub_reachable():  # say so now, not after huggingface_hub's retries
        reason = "the Hugging Face hub cannot be reached"
    else:
        last: Exception | None = None
        for name in _CHECKPOINT_NAMES[:3]:
            try:
                return Path(hf_hub_download(repo_id, name))
            except Exception as err:  # try the next file name; report the last failure
                last = err
        reason = type(last).__name__
    raise MissingWeightsError(
        f"{what}: could not get an open_clip checkpoint from hf-hub:{repo_id} ({reason})",
        hint=f"download {_CHECKPOINT_NAMES[0]} from https://huggingface.co/{repo_id} while online, "
        "or pass a local file or folder",
    )


def build_clip_visual(
    model_name: str, checkpoint: Path | None = None, *, seed: int = 0, device: str = "cpu"
) -> torch.nn.Module:
    """The image tower of ``model_name`` in eval mode, fp32, on ``device``.

    Without a checkpoint the weights are random from ``seed`` (tests, benchmarks). A
    checkpoint is loaded strictly into the full CLIP first, so a wrong file fails loudly.
    """
    import pickle

    import torch
    from open_clip.factory import load_checkpoint
    from open_clip.model import CLIP

    from storymem_cli.models.safe_load import refusal

    cfg = clip_config(model_name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(**cfg)
    if checkpoint is not None:
        try:
            load_checkpoint(model, str(checkpoint), strict=True)
        except (pickle.UnpicklingError, RuntimeError, KeyError, ValueError, OSError, EOFError) as err:
            refused = refusal(err, checkpoint, hint="pass an open_clip .safetensors checkpoint")
            if refused is not None:
                raise refused from None
            raise MissingWeightsError(
                f"{checkpoint} is not a {model_name} checkpoint: {str(err).splitlines()[0]}",
                hint="pass the open_clip checkpoint of this exact architecture",
            ) from None
    visual = model.visual
    del model
    return visual.to(device=device, dtype=torch.float32).eval().requires_grad_(False)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    from torchvision.transforms import functional as TF

    return TF.normalize(x, CLIP_MEAN, CLIP_STD)


def clip_preprocess(frames: np.ndarray, size: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 frames (N, H, W, 3) -> normalised float32 (N, 3, size, size): the centre square.

    Resize the short side to ``size`` (bicubic, antialiased, on the uint8 tensor so the
    result is rounded back to uint8 as torchvision does for video frames), centre crop,
    /255, CLIP mean/std. This is VBench's aesthetic recipe and CLIP's own transform; on a
    wide frame it sees only the middle (58% of the width at 832x480).
    """
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    # A read-only array (bank images are) is copied: torch warns about sharing its memory.
    frames = np.ascontiguousarray(frames)
    x = (torch.from_numpy(frames) if frames.flags.writeable else torch.tensor(frames)).to(device).permute(0, 3, 1, 2)
    x = TF.resize(x, size, interpolation=InterpolationMode.BICUBIC, antialias=True)
    x = TF.center_crop(x, [size, size])
    return _normalize(x.float().div_(255.0))


def stretch_preprocess(frames: np.ndarray, size: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 frames (N, H, W, 3) -> normalised float32 (N, 3, size, size): the whole frame.

    The authors' release (extract_keyframes.py): its ~200k-pixel copy of the frame
    (downsize.py), /255, bilinear to size x size without antialiasing (aspect ratio not
    kept), CLIP mean/std. Edges count as much as the centre.
    """
    import torch

    from storymem_cli.scoring.downsize import release_downsize

    x = release_downsize(frames).to(device).float().div_(255.0)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return _normalize(x)


# How a frame becomes a square CLIP input: "crop" the centre (VBench, the aesthetic metric)
# or "stretch" the whole frame (the release's keyframe selection).
PREPROCESS = {"crop": clip_preprocess, "stretch": stretch_preprocess}
Resize = Literal["crop", "stretch"]


def check_frames(frames: np.ndarray, *, argument: str = "frames") -> None:
    """Frames must be uint8 (N, H, W, 3); anything else is a caller bug, named precisely."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        got = f"{type(frames).__name__} {getattr(frames, 'dtype', '')} {getattr(frames, 'shape', '')}"
        raise ValueError(f"{argument} must be a uint8 array of shape (N, H, W, 3), got {got}")


def image_size(visual: torch.nn.Module) -> int:
    size = visual.image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def embed_images(
    visual: torch.nn.Module,
    frames: np.ndarray,
    *,
    batch_size: int = 32,
    normalize: bool = True,
    resize: Resize = "crop",
) -> np.ndarray:
    """CLIP image features of uint8 frames in batches: float32 (N, D), L2-normalised rows.
    ``resize``: how a frame becomes the square input, see PREPROCESS."""
    import torch

    check_frames(frames)
    device = next(visual.parameters()).device
    size = image_size(visual)
    preprocess = PREPROCESS[resize]
    out = []
    with torch.inference_mode():
        for start in range(0, len(frames), batch_size):
            x = preprocess(frames[start : start + batch_size], size, device)
            feats = visual(x).float()
            if normalize:
                feats = torch.nn.functional.normalize(feats, dim=-1)
            out.append(feats.cpu())
    if not out:
        return np.zeros((0, visual.output_dim), dtype=np.float32)
    return torch.cat(out).numpy().astype(np.float32, copy=False)
