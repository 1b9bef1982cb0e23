"""A style LoRA's key layout, read from the file's header alone: which community layout it is, how it
reaches diffusers (the file by path, or our renamed tensors), and what of it will be applied.

diffusers' Wan loader (``WanLoraLoaderMixin.lora_state_dict``) converts the diffusers layout, the
``diffusion_model.`` layout of ComfyUI / diffusion-pipe / ai-toolkit / lightx2v exports, and complete
kohya / musubi-tuner files with alphas. It drops, with at most an info-level log, full-weight ``.diff``
deltas, norm deltas and ``diff_m`` modulation deltas; it fails on kohya files without alphas or with
some layers only, and on Wan names without a prefix. This module renames the last two into the
``diffusion_model.`` layout (the tensors untouched: a missing alpha means alpha = rank in every one of
these tools) and lists every key that will not be applied, so nothing is lost silently.

Pure functions and the safetensors header: no torch (the render's preflight uses it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from storymem_cli.models.lora_files import LoraError, quote_keys
from storymem_cli.models.lora_keys import WAN_TO_DIFFUSERS

LayoutName = Literal["diffusers", "diffusion_model", "wan", "kohya"]
LAYOUT_DESCRIPTIONS: dict[str, str] = {
    "diffusers": "diffusers (transformer.blocks.N.attn1.to_q.lora_A.weight)",
    "diffusion_model": "ComfyUI / diffusion-pipe / ai-toolkit / lightx2v (diffusion_model.blocks.N.self_attn.q...)",
    "wan": "original Wan names without a prefix (blocks.N.self_attn.q...)",
    "kohya": "kohya / musubi-tuner (lora_unet_blocks_N_self_attn_q.lora_down.weight)",
}
# Refused when more than this share of the file's values would not be applied: that is not the LoRA
# its author trained, whatever the cause.
MAX_DROPPED_SHARE = 0.5

# Original Wan modules outside the blocks that diffusers' converter maps (loaders/lora_conversion_utils.py).
_WAN_TOP_LEVEL = {
    "time_projection.1": "condition_embedder.time_proj",
    "head.head": "proj_out",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
}
_WAN_IN_BLOCK = {**WAN_TO_DIFFUSERS, "cross_attn.k_img": "attn2.add_k_proj", "cross_attn.v_img": "attn2.add_v_proj"}
_LORA_FACTORS = ("lora_A.weight", "lora_B.weight", "lora_down.weight", "lora_up.weight")
_WAN_KEY = re.compile(r"^(?P<module>.+?)\.(?P<kind>lora_(?:A|B|down|up)\.weight|alpha|diff|diff_b|diff_m)$")
_BLOCK_MODULE = re.compile(r"^blocks\.(\d+)\.(.+)$")
_DIFFUSERS_KEY = re.compile(r"^transformer\.(?P<module>.+)\.(?P<kind>lora_A\.weight|lora_B\.weight|lora_B\.bias)$")
# kohya joins the module path with underscores; these are the Wan modules it can name
_KOHYA_KEY = re.compile(r"^lora_unet_(?P<module>.+?)\.(?P<kind>lora_down\.weight|lora_up\.weight|alpha)$")
_KOHYA_MODULES = {m.replace(".", "_"): m for m in (*_WAN_IN_BLOCK, *_WAN_TOP_LEVEL)}
_KOHYA_BLOCK = re.compile(r"^blocks_(\d+)_(.+)$")
_STORYMEM_PREFIX = "base_model.model."
_WAN_ROOTS = ("blocks.", *(m.split(".")[0] + "." for m in _WAN_TOP_LEVEL))


@dataclass
class StyleLayout:
    """What loading a style LoRA file will do, decided from its keys (and shapes) only."""

    path: Path
    layout: LayoutName
    by_path: bool  # diffusers reads the file itself (its metadata included); else our renamed tensors
    rename: dict[str, str] = field(default_factory=dict)  # file key -> key handed to diffusers (not by_path)
    # diffusers module -> file keys it comes from; "bias" entries need a LoRA bias (lightx2v's diff_b)
    targets: dict[str, list[str]] = field(default_factory=dict)
    bias_targets: set[str] = field(default_factory=set)
    dropped: dict[str, str] = field(default_factory=dict)  # file key -> why it is not applied
    sizes: dict[str, int] = field(default_factory=dict)  # file key -> values in it

    @property
    def description(self) -> str:
        return LAYOUT_DESCRIPTIONS[self.layout]

    def dropped_share(self, dropped: Iterable[str]) -> float:
        total = sum(self.sizes.values()) or 1
        return sum(self.sizes.get(k, 0) for k in dropped) / total

    def check_dropped(self, dropped: Mapping[str, str], where: str = "") -> None:
        """Refuse the file when most of its values would not be applied."""
        share = self.dropped_share(dropped)
        if dropped and share > MAX_DROPPED_SHARE:
            reasons = sorted(set(dropped.values()))
            raise LoraError(
                f"{self.path}: {len(dropped)} of {len(self.sizes)} keys ({share:.0%} of its values) would not be "
                f"applied{where}: {'; '.join(reasons)}; e.g. {quote_keys(sorted(dropped))}",
                hint="storymem applies LoRA factors (lora_A/B, lora_down/up, alpha) and bias deltas (diff_b) only",
            )


def read_header(path: str | Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Key -> shape and the metadata of a ``.safetensors`` file, from its header (no tensor is read)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (no items())
            return shapes, dict(f.metadata() or {})
    except (SafetensorError, OSError) as e:
        raise LoraError(
            f"{path}: not a readable .safetensors file ({e})", hint="a truncated download? fetch the file again"
        ) from e


def _size(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _family(key: str) -> str:
    if key.startswith(_STORYMEM_PREFIX):
        return "storymem"
    if key.startswith("transformer."):
        return "diffusers"
    if key.startswith("diffusion_model."):
        return "diffusion_model"
    if key.startswith("lora_unet_"):
        return "kohya"
    if key.startswith(_WAN_ROOTS):
        return "wan"
    return "unknown"


def _wan_module(module: str) -> str | None:
    """diffusers module of an original Wan module path, or None."""
    if module in _WAN_TOP_LEVEL:
        return _WAN_TOP_LEVEL[module]
    match = _BLOCK_MODULE.match(module)
    if match and match.group(2) in _WAN_IN_BLOCK:
        return f"blocks.{match.group(1)}.{_WAN_IN_BLOCK[match.group(2)]}"
    return None


def _kohya_to_wan(key: str) -> str | None:
    """``lora_unet_blocks_0_self_attn_q.lora_down.weight`` -> ``blocks.0.self_attn.q.lora_down.weight``."""
    match = _KOHYA_KEY.match(key)
    if match is None:
        return None
    module, kind = match.group("module"), match.group("kind")
    block = _KOHYA_BLOCK.match(module)
    if block is not None and block.group(2) in _KOHYA_MODULES:
        return f"blocks.{block.group(1)}.{_KOHYA_MODULES[block.group(2)]}.{kind}"
    if module in _KOHYA_MODULES and "." in _KOHYA_MODULES[module] and not module.startswith("blocks"):
        return f"{_KOHYA_MODULES[module]}.{kind}"
    return None


def classify(path: str | Path, shapes: Mapping[str, tuple[int, ...]]) -> StyleLayout:
    """The layout of a style LoRA from its keys and shapes; :class:`LoraError` (naming the file) for a
    StoryMem LoRA, a file with no tensors, an unknown or mixed layout, or one mostly not applicable."""
    path = Path(path)
    if not shapes:
        raise LoraError(f"{path}: the file holds no tensors")
    families = {_family(k) for k in shapes}
    if "storymem" in families:
        raise LoraError(
            f"{path}: this is a StoryMem LoRA (base_model.model.blocks... keys), not a style LoRA",
            hint="give it with --lora (a folder with backbone_high_noise and backbone_low_noise files)",
        )
    known = families - {"unknown"}
    if len(known) != 1:
        sample = [next(k for k in shapes if _family(k) == f) for f in sorted(families)]
        what = "mixes key layouts" if len(known) > 1 else "is in no LoRA layout storymem knows"
        raise LoraError(
            f"{path}: {what}, e.g. {quote_keys(sample)}",
            hint="a style LoRA's keys all start with transformer., diffusion_model., lora_unet_ or blocks.; "
            "see docs/lora.md for the layouts",
        )
    layout: LayoutName = known.pop()  # type: ignore[assignment]
    result = StyleLayout(path=path, layout=layout, by_path=True, sizes={k: _size(s) for k, s in shapes.items()})
    if layout == "diffusers":
        _classify_diffusers(result, shapes)
    else:
        _classify_wan(result, shapes)
    if not result.targets:
        reasons = sorted(set(result.dropped.values())) or ["no LoRA factor"]
        raise LoraError(
            f"{path}: nothing in it can be applied ({'; '.join(reasons)}), e.g. {quote_keys(sorted(shapes))}",
            hint="storymem applies LoRA factors (lora_A/B, lora_down/up, alpha) and bias deltas (diff_b)",
        )
    result.check_dropped(result.dropped)
    return result


def _classify_diffusers(result: StyleLayout, shapes: Mapping[str, tuple[int, ...]]) -> None:
    for key in shapes:
        match = _DIFFUSERS_KEY.match(key)
        if match is None:
            result.dropped[key] = "not a LoRA factor or bias diffusers loads"
            continue
        result.targets.setdefault(match.group("module"), []).append(key)
        if match.group("kind") == "lora_B.bias":
            result.bias_targets.add(match.group("module"))
    # always by path, so that the alpha / rank in the metadata reaches peft; a key diffusers cannot
    # place is counted as dropped here, or fails the load with diffusers' reason


def _classify_wan(result: StyleLayout, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """diffusion_model. / bare Wan / kohya keys: mapped to diffusers modules as diffusers' converter does."""
    wan_keys: dict[str, str] = {}  # file key -> Wan key without prefix
    for key in shapes:
        if result.layout == "kohya":
            wan = _kohya_to_wan(key)
        else:
            wan = key.removeprefix("diffusion_model.")
        if wan is None:
            result.dropped[key] = "not a kohya key storymem can place"
        else:
            wan_keys[key] = wan
    has_factor = {m.group("module") for w in wan_keys.values() if (m := _WAN_KEY.match(w)) and m.group("kind") in _LORA_FACTORS}
    for key, wan in wan_keys.items():
        match = _WAN_KEY.match(wan)
        module = _wan_module(match.group("module")) if match else None
        kind = match.group("kind") if match else None
        if kind == "diff_m":
            result.dropped[key] = "diff_m (a modulation delta: diffusers' Wan loader drops it)"
        elif kind in ("diff", "diff_b") and "norm" in wan:
            result.dropped[key] = "a norm delta (diffusers' Wan loader drops it)"
        elif match is None or module is None:
            result.dropped[key] = "not a Wan layer diffusers' converter knows"
        elif kind == "diff" and not (wan == "head.head.diff" and "head.head.diff_b" in wan_keys.values()):
            result.dropped[key] = ".diff (a full-weight delta: diffusers' Wan loader drops it)"
        elif kind == "diff_b" and match.group("module") not in has_factor and module == _WAN_TOP_LEVEL["time_projection.1"]:
            result.dropped[key] = "a bias delta without its LoRA factors (diffusers drops it)"
        else:
            result.targets.setdefault(module, []).append(key)
            if kind == "diff_b":
                result.bias_targets.add(module)
    # diffusers reads the file itself where its converter takes every key; else our renamed keys
    if result.layout == "diffusion_model":
        result.by_path = not any(k for k, why in result.dropped.items() if why.startswith("not a"))
    elif result.layout == "kohya":
        result.by_path = _complete_kohya(wan_keys) and not result.dropped
    else:
        result.by_path = False
    if not result.by_path:
        unplaceable = {k for k, why in result.dropped.items() if why.startswith("not a")}
        result.rename = {k: "diffusion_model." + w for k, w in wan_keys.items() if k not in unplaceable}


def _complete_kohya(wan_keys: Mapping[str, str]) -> bool:
    """What diffusers' musubi converter takes: blocks 0..N-1, each with the ten linears, each with
    lora_down, lora_up and alpha, and nothing else."""
    blocks = {int(m.group(1)) for w in wan_keys.values() if (m := _BLOCK_MODULE.match(w))}
    want = {
        f"blocks.{b}.{m}.{kind}" for b in blocks for m in WAN_TO_DIFFUSERS for kind in ("lora_down.weight", "lora_up.weight", "alpha")
    }
    return bool(blocks) and blocks == set(range(len(blocks))) and set(wan_keys.values()) == want
