"""`storymem doctor`: would a render of this preset start here? Checked before any GPU time, in seconds.

Each check is one row: the files the loader needs (its own checks: weights.check_components and
lora_files.find_storymem_lora_files), their configs against the preset's widths, every safetensors
header (read, never the tensors), the StoryMem LoRA's keys against the expert built on the meta
device, the keyframe scorers' files, the GPU against the offload flags it needs, and the disk.
A row is ``ok``, ``warn`` (the render starts, but read this), ``fail`` (it would not start) or
``skip`` (an earlier row failed, so this one cannot be checked).
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from storymem_cli.errors import StorymemError
from storymem_cli.models.downloads import download_plan, matches
from storymem_cli.models.lora_files import find_storymem_lora_files, lora_variant
from storymem_cli.models.presets import ModelPreset
from storymem_cli.models.weights import EXPERTS, I2V_COMPONENTS, T2V_COMPONENTS, check_components, locate_source
from storymem_cli.scoring.hpsv3_files import HPSV3_BASE_FILES, HPSV3_BASE_REPO

Status = Literal["ok", "warn", "fail", "skip"]
GIB = 2**30
RUN_HEADROOM = 2 * 10**9  # a run folder (clips, memory PNGs, run.json) and the hub's temporary files
MAX_HEADER = 100 * 2**20  # safetensors' own limit on the JSON header


@dataclass
class Row:
    name: str
    status: Status
    detail: str
    hint: str = ""


@dataclass(frozen=True)
class Expected:
    """Config values the preset's weights must have (diffusers/transformers config.json keys)."""

    transformer: dict[str, dict[str, Any]]  # "i2v" / "t2v" -> keys of the experts' config.json
    text_encoder: dict[str, Any]
    vae: dict[str, Any]


def a14b_expected() -> Expected:
    from storymem_cli.models.wan_a14b import a14b_transformer_config

    widths = ("in_channels", "out_channels", "num_layers", "num_attention_heads", "attention_head_dim", "ffn_dim",
              "text_dim", "freq_dim", "patch_size")  # fmt: skip
    return Expected(
        transformer={k: {w: a14b_transformer_config(k)[w] for w in widths} for k in ("i2v", "t2v")},  # type: ignore[arg-type]
        text_encoder={"d_model": 4096, "num_heads": 64, "num_layers": 24},  # UMT5-XXL's encoder (google/umt5-xxl)
        vae={"z_dim": 16},  # the Wan2.1 VAE A14B uses
    )


@dataclass(frozen=True)
class Device:
    """What the machine offers: torch's view of it."""

    torch: str | None  # version; None: torch cannot be imported
    cuda: str | None  # torch's CUDA version; None: a CPU build
    gpus: tuple[tuple[str, int], ...] = ()  # (name, total bytes) per visible GPU
    error: str = ""


def probe_device() -> Device:
    try:
        import torch
    except Exception as err:  # a broken install shows as any exception
        return Device(None, None, error=f"{type(err).__name__}: {err}")
    gpus: tuple[tuple[str, int], ...] = ()
    if torch.cuda.is_available():
        gpus = tuple(
            (torch.cuda.get_device_name(i), torch.cuda.get_device_properties(i).total_memory)
            for i in range(torch.cuda.device_count())
        )
    return Device(torch.__version__, torch.version.cuda, gpus)


def disk_free(path: Path) -> int:
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


# GPU memory -> the flags the render needs (docs/models.md, "Which flags on which card": measured on an
# H200, projected to the full model). Totals as torch reports them, a little under the card's label.
GPU_FLAGS: tuple[tuple[float, tuple[str, ...]], ...] = (
    (100, ()),  # 141 GB (H200): ~74 GiB peak with --offload none, HPSv3 ~17 GiB beside it
    (70, ("--offload", "model")),  # 80 GB: one expert at a time (~34 GiB); or --offload none --quantize fp8
    (40, ("--offload", "model")),  # 48 GB
    (20, ("--offload", "group", "--vae-tiling")),  # 24 GB: block by block (~9 GiB); HPSv3 alone is ~17 GiB
)


def flags_for_gpu(total_bytes: int, aesthetic: str) -> tuple[str, ...] | None:
    """The render flags a GPU of ``total_bytes`` needs for wan2.2-a14b; None: too small for any."""
    for floor_gib, flags in GPU_FLAGS:
        if total_bytes >= floor_gib * GIB:
            return (*flags, "--aesthetic", "laion") if floor_gib < 40 and aesthetic == "hpsv3" else flags
    return None


# -- safetensors headers --------------------------------------------------------------------------------


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file, checked against the file's size (a truncated download
    fails here); reads 8 bytes and the header, never a tensor. Raises ValueError saying what is wrong."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{size} bytes: too short for a safetensors header")
        (length,) = struct.unpack("<Q", head)
        if length > min(MAX_HEADER, size - 8):
            raise ValueError(f"header length {length} does not fit the file's {size} bytes")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"header is not JSON ({err})") from None
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if 8 + length + end != size:
        raise ValueError(f"{size} bytes but the header describes {8 + length + end} (truncated or padded)")
    return header


def header_shapes(header: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(t["shape"]) for k, t in header.items() if k != "__metadata__"}


# -- the checks ---------------------------------------------------------------------------------------


@dataclass
class Found:
    """What the file rows located, for the rows after them."""

    folders: dict[str, Path] = field(default_factory=dict)  # "i2v" / "t2v"
    lora: tuple[Path, Path] | None = None


def _row(name: str, check: Callable[[], tuple[Status, str] | tuple[Status, str, str]]) -> Row:
    try:
        return Row(name, *check())
    except StorymemError as err:
        return Row(name, "fail", err.message, err.hint or "")


def _files_rows(preset: ModelPreset, continuation: str, found: Found) -> Iterator[Row]:
    for kind, source, components in (("i2v", preset.i2v_source, I2V_COMPONENTS), ("t2v", preset.t2v_source, T2V_COMPONENTS)):

        def check(kind: str = kind, source: str = source, components: Any = components) -> tuple[Status, str]:
            folder, repo = locate_source(source)
            check_components(folder, components, repo)
            found.folders[kind] = folder
            return "ok", f"{', '.join(c.folder for c in components)} in {folder}"

        yield _row(f"{kind} files", check)

    def lora() -> tuple[Status, str]:
        if preset.lora_source is None:
            return "ok", "this model loads no StoryMem LoRA"
        folder, _ = locate_source(preset.lora_source)
        found.lora = find_storymem_lora_files(folder, lora_variant(continuation))
        return "ok", f"{lora_variant(continuation)}: {found.lora[0].name}, {found.lora[1].name} in {found.lora[0].parent}"

    yield _row("LoRA files", lora)


def _configs_row(found: Found, expected: Expected | None) -> Row:
    if expected is None:
        return Row("configs", "ok", "no expected widths for this model: its own configs are used")
    if set(found.folders) != {"i2v", "t2v"}:
        return Row("configs", "skip", "the model's files are not all there")
    wrong: list[str] = []
    wanted = [(found.folders[k] / e.folder / "config.json", v) for k, v in expected.transformer.items() for e in EXPERTS]
    wanted += [(found.folders["i2v"] / "text_encoder" / "config.json", expected.text_encoder),
               (found.folders["i2v"] / "vae" / "config.json", expected.vae)]  # fmt: skip
    for path, values in wanted:
        config = json.loads(path.read_text(encoding="utf-8"))
        wrong += [f"{path.parent.parent.name}/{path.parent.name} {key} = {config.get(key)!r}, expected {value!r}"
                  for key, value in values.items() if _norm(config.get(key)) != _norm(value)]  # fmt: skip
    if wrong:
        return Row("configs", "fail", "; ".join(wrong[:4]) + (f" and {len(wrong) - 4} more" if len(wrong) > 4 else ""),
                   "these are not the weights of this model: download them again (storymem download)")  # fmt: skip
    return Row("configs", "ok", f"{len(wanted)} configs have the model's widths")


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _headers_row(found: Found) -> tuple[Row, dict[Path, dict[str, Any]]]:
    files = sorted({p for folder in found.folders.values() for p in folder.rglob("*.safetensors")})
    files += list(found.lora or ())
    headers: dict[Path, dict[str, Any]] = {}
    bad: list[str] = []
    for path in files:
        try:
            headers[path] = read_safetensors_header(path)
        except (OSError, ValueError) as err:
            bad.append(f"{path}: {err}")
    for folder in {p.parent for p in files}:  # every tensor an index names is in its shard
        for index in folder.glob("*.safetensors.index.json"):
            for key, shard in json.loads(index.read_text(encoding="utf-8"))["weight_map"].items():
                header = headers.get(folder / shard)
                if header is not None and key not in header:
                    bad.append(f"{folder / shard}: lacks {key!r}, which {index.name} places there")
                    break
    if not files:
        return Row("safetensors headers", "skip", "no weight files found"), headers
    if bad:
        return Row("safetensors headers", "fail", "; ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else ""),
                   "download the file again (storymem download resumes and replaces a broken file)"), headers  # fmt: skip
    total = sum(p.stat().st_size for p in files)
    return Row("safetensors headers", "ok", f"{len(files)} files, {total / 1e9:,.1f} GB, headers match their sizes"), headers


def _lora_keys_row(found: Found, headers: dict[Path, dict[str, Any]], wanted: bool) -> Row:
    if not wanted:
        return Row("LoRA keys", "ok", "this model loads no StoryMem LoRA")
    if found.lora is None or "i2v" not in found.folders or any(p not in headers for p in found.lora):
        return Row("LoRA keys", "skip", "the expert's config or the LoRA's headers are not readable")
    from storymem_cli.models.lora import check_storymem_lora
    from storymem_cli.models.wan_a14b import build_meta_transformer

    done = []
    for path, expert in zip(found.lora, EXPERTS, strict=True):
        config = json.loads((found.folders["i2v"] / expert.folder / "config.json").read_text(encoding="utf-8"))
        model = build_meta_transformer({k: v for k, v in config.items() if not k.startswith("_")})
        try:
            plan = check_storymem_lora(header_shapes(headers[path]), model, source=str(path))
        except StorymemError as err:
            return Row("LoRA keys", "fail", err.message, err.hint or "the LoRA does not fit this model's experts")
        done.append(f"{path.name} -> {expert.folder}: {plan.tensors} tensors, rank {plan.rank}")
    return Row("LoRA keys", "ok", "; ".join(done))


def _hpsv3_row() -> Row:
    from storymem_cli.errors import MissingWeightsError
    from storymem_cli.scoring.hpsv3_files import locate_hpsv3

    hint = "storymem download (or render with --aesthetic laion or none)"
    try:  # the scorer's own lookup: the same files, found the same way
        files = locate_hpsv3()
    except MissingWeightsError as err:
        return Row("HPSv3 scorer", "fail", str(err), hint)
    try:
        read_safetensors_header(files.checkpoint)
        config = json.loads((files.base / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return Row("HPSv3 scorer", "fail", f"{files.checkpoint}: {err}", hint)
    if config.get("model_type") != "qwen2_vl":
        return Row("HPSv3 scorer", "fail", f"{HPSV3_BASE_REPO} config.json is model_type {config.get('model_type')!r}, "
                   "not qwen2_vl", hint)  # fmt: skip
    return Row("HPSv3 scorer", "ok", f"{files.checkpoint} and {len(HPSV3_BASE_FILES)} files of {HPSV3_BASE_REPO}")


def _clip_row(name: str, model_name: str) -> Row:
    from storymem_cli.scoring.clip import KNOWN_TAGS, cached_pretrained, open_clip_hub_files

    cfg = KNOWN_TAGS[(model_name, "openai")]
    repo_id, names = open_clip_hub_files(cfg)
    hit = cached_pretrained(cfg)  # the embedder's own cache lookup: the same files, in the same order
    if hit is None:
        return Row(name, "fail", f"{repo_id}/{names[0]} is not in the Hugging Face cache",
                   "storymem download (open_clip would fetch it on first use, which needs the network then)")  # fmt: skip
    if hit.suffix == ".safetensors":
        try:
            read_safetensors_header(hit)
        except (OSError, ValueError) as err:
            return Row(name, "fail", f"{hit}: {err}", "storymem download")
    return Row(name, "ok", str(hit))


def _laion_head_row() -> Row:
    from storymem_cli.scoring.laion import LaionAesthetic

    return _row("LAION head", lambda: ("ok", str(LaionAesthetic.find_head(None))))


def _device_row(device: Device, aesthetic: str) -> Row:
    if device.torch is None:
        return Row("torch / GPU", "fail", f"torch cannot be imported ({device.error})", "reinstall torch")
    if not device.gpus:
        return Row("torch / GPU", "fail", f"torch {device.torch}: no CUDA GPU" + ("" if device.cuda else " (a CPU build of torch)"),
                   "wan2.2-a14b needs a CUDA GPU; on a CPU render with --model toy or tiny")  # fmt: skip
    name, total = device.gpus[0]
    flags = flags_for_gpu(total, aesthetic)
    what = f"torch {device.torch}, CUDA {device.cuda}, {name} ({total / GIB:.0f} GiB)"
    if flags is None:
        return Row("torch / GPU", "fail", f"{what}: too little memory for wan2.2-a14b (the least, --offload group, needs ~9 GiB "
                   "plus the VAE decode)", "see docs/models.md: GPU memory and time per offload mode")  # fmt: skip
    if not flags:
        return Row("torch / GPU", "ok", f"{what}: the default --offload none fits")
    return Row("torch / GPU", "warn", f"{what}: render with {' '.join(flags)}", "docs/models.md: which flags on which card")


def _disk_row(preset: ModelPreset, continuation: str, aesthetic: str) -> Row:
    from huggingface_hub import constants

    from storymem_cli.models.downloads import RepoDownload

    missing = 0
    for d in download_plan(preset, continuation, aesthetic):
        present = _present(d) if isinstance(d, RepoDownload) else d.dest.is_file()
        missing += 0 if present else d.bytes
    free = disk_free(Path(constants.HF_HUB_CACHE))
    need = missing + RUN_HEADROOM
    detail = f"{free / 1e9:,.0f} GB free at {constants.HF_HUB_CACHE}; {missing / 1e9:,.1f} GB still to download"
    if free < need:
        return Row("disk", "fail", detail, f"free {need / 1e9:,.0f} GB (downloads + {RUN_HEADROOM / 1e9:.0f} GB for the run)")
    return Row("disk", "ok", detail)


def _present(download: Any) -> bool:
    """Whether a hub part is in the cache: a snapshot holding a file for each of its patterns."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(download.repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError):
        return False
    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    return all(any(matches(f, (pattern,)) for f in files) for pattern in download.patterns)


def run_doctor(
    preset: ModelPreset,
    continuation: str = "mi2v",
    aesthetic: str | None = None,
    *,
    expected: Expected | None = None,
    device: Device | None = None,
) -> list[Row]:
    """Every row, in order. ``expected``: the widths to hold the configs to (None: none checked);
    ``device``: the machine (None: probe it)."""
    aesthetic = aesthetic or preset.memory.aesthetic
    found = Found()
    rows = list(_files_rows(preset, continuation, found))
    rows.append(_configs_row(found, expected))
    headers_row, headers = _headers_row(found)
    rows += [headers_row, _lora_keys_row(found, headers, preset.lora_source is not None)]
    if preset.memory.embedder == "clip-vit-b-32":
        rows.append(_clip_row("CLIP ViT-B/32 (embedder)", "ViT-B-32-quickgelu"))
    if aesthetic == "hpsv3":
        rows.append(_hpsv3_row())
    elif aesthetic == "laion":
        rows += [_clip_row("CLIP ViT-L/14 (LAION)", "ViT-L-14-quickgelu"), _laion_head_row()]
    rows.append(_device_row(device or probe_device(), aesthetic))
    rows.append(_disk_row(preset, continuation, aesthetic))
    return rows
