"""What a render downloads: the files a preset loads, their sizes and licences (torch-free).

The file list is built from the loader's own description (``weights.I2V_COMPONENTS`` /
``T2V_COMPONENTS``, ``lora_files.storymem_hub_files``, ``scoring.hpsv3_files``, the CLIP tags the
embedder and the LAION scorer resolve), so the plan and the loader cannot drift; a test records the
files the loader opens on a built model folder and checks the plan covers exactly those.

Sizes: with the hub reachable, ``resolve_online`` replaces every entry by the hub's own file list and
sizes (``HfApi.model_info(files_metadata=True)``) and its card's licence. Offline, the sizes below are
used, each marked *measured* (read off the hub's file pages) or *estimate* (parameter count x bytes
per parameter in the dtype the repo stores), with where the number comes from.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from storymem_cli.models.lora_files import STORYMEM_HUB_REPO, lora_variant, storymem_hub_files
from storymem_cli.models.presets import WAN_I2V_REPO, WAN_T2V_REPO, ModelPreset
from storymem_cli.models.weights import I2V_COMPONENTS, T2V_COMPONENTS, is_repo_id, repo_patterns
from storymem_cli.scoring.hpsv3_files import HPSV3_BASE_FILES, HPSV3_BASE_REPO, HPSV3_CHECKPOINT, HPSV3_REPO

GB = 10**9
MB = 10**6


@dataclass(frozen=True)
class Size:
    bytes: int
    how: Literal["measured", "estimate", "hub"]  # hub: read from the hub's metadata just now
    source: str  # where the number comes from

    def label(self) -> str:
        return {"measured": "measured", "estimate": "estimate", "hub": "from the hub"}[self.how]


@dataclass(frozen=True)
class Licence:
    name: str  # as the model card's `license:` field writes it
    source: str  # where it was read
    note: str = ""  # what it means for a user


@dataclass(frozen=True)
class Entry:
    """One hub pattern (a file name or a folder glob) and what it weighs."""

    pattern: str
    size: Size


@dataclass(frozen=True)
class RepoDownload:
    """A hub repo's part of the plan. ``local_subdir``: where ``--local-dir`` puts it (the model folder
    layout ``--model DIR`` reads); None: always the Hugging Face cache, where its loader looks."""

    role: str
    repo_id: str
    entries: tuple[Entry, ...]
    licence: Licence
    local_subdir: str | None = None
    files: tuple[tuple[str, int], ...] = field(default=())  # (path, bytes) once resolved on the hub

    @property
    def patterns(self) -> tuple[str, ...]:
        return tuple(e.pattern for e in self.entries)

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.files) if self.files else sum(e.size.bytes for e in self.entries)


@dataclass(frozen=True)
class UrlDownload:
    """A file outside the hub (the LAION head lives in a GitHub repo), fetched to ``dest``."""

    role: str
    url: str
    dest: Path
    size: Size
    licence: Licence

    @property
    def bytes(self) -> int:
        return self.size.bytes


Download = RepoDownload | UrlDownload

# -- sizes -------------------------------------------------------------------------------------------

A14B_I2V_EXPERT_PARAMS = 14_288_901_184  # WanTransformer3DModel(a14b_transformer_config("i2v")) on meta
A14B_T2V_EXPERT_PARAMS = 14_288_491_584  # the same with 16 input channels instead of 36
WAN_VAE_PARAMS = 126_892_531  # AutoencoderKLWan() defaults (the Wan2.1 VAE A14B uses) on meta
STORYMEM_LORA_PARAMS = 613_416_960  # rank 128 on 40 blocks x 10 linears: 40 x (8 x 2 x 128 x 5120 + 2 x 128 x (5120 + 13824))
FP32 = 4
_EXPERT_NOTE = "parameters x 4 bytes: the Diffusers repos store the experts in float32 (12 shards of ~4.9 GB)"

_SMALL = Size(2_000, "estimate", "a JSON file")
_WAN_SHARED: dict[str, Size] = {
    "tokenizer": Size(21_500_000, "measured", "hub file list of the same UMT5 tokenizer folder in "
                      "magespace/Wan2.2-I2V-A14B-Lightning-Diffusers: 21.5 MB"),
    "text_encoder": Size(11_360_000_000, "measured", "hub file list of Wan-AI/Wan2.2-I2V-A14B-Diffusers/text_encoder: "
                         "3 bf16 shards, 4.94 + 4.98 + 1.44 GB"),
    "vae": Size(WAN_VAE_PARAMS * FP32, "estimate", "126.9 M parameters x 4 bytes (float32)"),
    "scheduler": _SMALL,
}  # fmt: skip


def _expert_size(params: int) -> Size:
    return Size(params * FP32, "estimate", f"{params / 1e9:.2f} B {_EXPERT_NOTE}")


def _wan_entries(components: tuple[Any, ...], expert_params: int) -> tuple[Entry, ...]:
    sizes = {**_WAN_SHARED, "transformer": _expert_size(expert_params), "transformer_2": _expert_size(expert_params)}
    patterns = repo_patterns(components)
    by_pattern = {c.pattern: sizes[c.folder] for c in components}
    return tuple(Entry(p, by_pattern.get(p, _SMALL)) for p in patterns)


HPSV3_SIZE = Size(16_600_000_000, "estimate", "Qwen2-VL-7B (8.3 B parameters) in bf16 plus the reward head; "
                  "the hub lists HPSv3.safetensors at 16.6 GB")  # fmt: skip
_QWEN_TOKENIZER_FILES = {"tokenizer.json": 7_000_000, "vocab.json": 2_800_000, "merges.txt": 1_700_000}  # Qwen2's BPE
CLIP_B32_SIZE = Size(605_000_000, "measured", "hub file list of timm/vit_base_patch32_clip_224.openai: 605 MB")
CLIP_L14_SIZE = Size(427_616_513 * FP32, "estimate", "CLIP ViT-L/14: 427.6 M parameters x 4 bytes (float32)")
LAION_HEAD_SIZE = Size(3_900, "estimate", "Linear(768, 1) saved by torch: ~4 KB")

# -- licences ----------------------------------------------------------------------------------------

WAN_LICENCE = Licence("apache-2.0", "model cards of Wan-AI/Wan2.2-I2V-A14B-Diffusers and -T2V-A14B-Diffusers")
STORYMEM_LICENCE = Licence(
    "cc-by-nc-4.0",
    "model card front matter of huggingface.co/Kevin-thu/StoryMem (README.md `license:`)",
    "non-commercial use only: the default wan2.2-a14b model, which loads this LoRA, is then for non-commercial use",
)
HPSV3_LICENCE = Licence("apache-2.0", "model card front matter of huggingface.co/MizzenAI/HPSv3")
QWEN2_VL_LICENCE = Licence("apache-2.0", "model card of Qwen/Qwen2-VL-7B-Instruct (2B and 7B released under Apache 2.0)")
CLIP_LICENCE = Licence(
    "apache-2.0", "timm model cards of timm/vit_*_clip_224.openai; OpenAI's own CLIP release (github.com/openai/CLIP) is MIT"
)
LAION_LICENCE = Licence("MIT", "LICENSE of github.com/LAION-AI/aesthetic-predictor")

# -- the plan ----------------------------------------------------------------------------------------


def _clip_download(role: str, model_name: str, size: Size) -> RepoDownload:
    from storymem_cli.scoring.clip import KNOWN_TAGS, open_clip_hub_files

    repo_id, names = open_clip_hub_files(KNOWN_TAGS[(model_name, "openai")])
    return RepoDownload(role, repo_id, (Entry(names[0], size),), CLIP_LICENCE)


def download_plan(preset: ModelPreset, continuation: str = "mi2v", aesthetic: str | None = None) -> list[Download]:
    """Everything a render of ``preset`` loads with this continuation mode and aesthetic filter
    (None: the preset's), in the order a user needs it. Built-in presets (toy, tiny) need nothing."""
    if preset.builtin:
        return []
    aesthetic = aesthetic or preset.memory.aesthetic
    plan: list[Download] = [
        RepoDownload("Wan2.2 I2V A14B: memory shots, and the text encoder, VAE and tokenizer of both",
                     preset.i2v_source, _wan_entries(I2V_COMPONENTS, A14B_I2V_EXPERT_PARAMS), WAN_LICENCE, "i2v"),
        RepoDownload("Wan2.2 T2V A14B: the first shot (its two experts only)",
                     preset.t2v_source, _wan_entries(T2V_COMPONENTS, A14B_T2V_EXPERT_PARAMS), WAN_LICENCE, "t2v"),
    ]  # fmt: skip
    if preset.lora_source is not None:
        variant = lora_variant(continuation)
        lora_file = Size(STORYMEM_LORA_PARAMS * FP32, "estimate", "613.4 M LoRA parameters x 4 bytes (float32)")
        entries = tuple(Entry(path, lora_file) for path in storymem_hub_files(variant))
        plan.append(RepoDownload(f"StoryMem LoRA, {variant.upper()} variant (both experts)", preset.lora_source,
                                 entries, STORYMEM_LICENCE, "lora"))  # fmt: skip
    if preset.memory.embedder == "clip-vit-b-32":
        plan.append(_clip_download("memory frame embedder: OpenAI CLIP ViT-B/32", "ViT-B-32-quickgelu", CLIP_B32_SIZE))
    if aesthetic == "hpsv3":
        plan.append(RepoDownload("HPSv3 keyframe filter: the reward model", HPSV3_REPO,
                                 (Entry(HPSV3_CHECKPOINT, HPSV3_SIZE),), HPSV3_LICENCE))  # fmt: skip
        base = tuple(
            Entry(name, Size(_QWEN_TOKENIZER_FILES[name], "estimate", "Qwen2's BPE tokenizer files"))
            if name in _QWEN_TOKENIZER_FILES else Entry(name, _SMALL)
            for name in HPSV3_BASE_FILES
        )  # fmt: skip
        plan.append(RepoDownload("HPSv3 keyframe filter: Qwen2-VL's config, tokenizer and processor (not its weights)",
                                 HPSV3_BASE_REPO, base, QWEN2_VL_LICENCE))  # fmt: skip
    elif aesthetic == "laion":
        from storymem_cli.scoring.laion import HEAD_URL, default_head_paths

        plan.append(_clip_download("LAION aesthetic filter: OpenAI CLIP ViT-L/14", "ViT-L-14-quickgelu", CLIP_L14_SIZE))
        plan.append(UrlDownload("LAION aesthetic filter: the linear head", HEAD_URL, default_head_paths()[0],
                                LAION_HEAD_SIZE, LAION_LICENCE))  # fmt: skip
    return [d for d in plan if not isinstance(d, RepoDownload) or is_repo_id(d.repo_id)]  # local folders: nothing to fetch


def plan_bytes(plan: list[Download]) -> int:
    return sum(d.bytes for d in plan)


def matches(path: str, patterns: tuple[str, ...]) -> bool:
    """Whether a repo file is fetched by ``patterns`` (fnmatch, as huggingface_hub's allow_patterns)."""
    return any(fnmatch.fnmatch(path, p) for p in patterns)


def resolve_online(download: RepoDownload) -> RepoDownload:
    """The entry with the hub's own file list, sizes and card licence (raises what huggingface_hub raises)."""
    from huggingface_hub import HfApi

    info = HfApi().model_info(download.repo_id, files_metadata=True)
    files = tuple(
        (s.rfilename, int(s.size or 0)) for s in info.siblings or () if matches(s.rfilename, download.patterns)
    )
    card = getattr(info, "card_data", None)
    licence = download.licence
    name = getattr(card, "license", None) if card is not None else None
    if name and name != licence.name:
        licence = Licence(str(name), f"huggingface.co/{download.repo_id} card (now)", licence.note)
    return replace(download, files=files, licence=licence)
