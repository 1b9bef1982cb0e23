"""A user's style LoRA (an ordinary diffusers / ComfyUI Wan LoRA) on one or both experts.

diffusers' own Wan loader does the reading and key conversion; this module adds
the strength, the both-experts-or-neither rule, and keeps a fused StoryMem LoRA fused.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from storymem_cli.models import lora_adapters as adapters
from storymem_cli.models.runtime import StyleExperts
from storymem_cli.models.lora_files import LoraError, quote_keys, read_lora_file
from storymem_cli.models.lora_keys import parse_key

if TYPE_CHECKING:
    import torch


ExpertName = Literal["transformer", "transformer_2"]


def load_style_lora(
    pipe: Any,
    path: str | Path,
    strength: float,
    *,
    adapter_name: str | None = None,
    experts: StyleExperts = "both",
) -> None:
    """Apply an ordinary diffusers-format Wan LoRA (a user's style LoRA) to both experts.

    ``experts="high"`` / ``"low"`` puts it on ``transformer`` / ``transformer_2`` only,
    for Wan2.2 style LoRAs that ship one file per expert.

    diffusers' own loader reads the file (diffusers, ComfyUI ``diffusion_model.`` and
    musubi layouts); its strength becomes the adapter's weight. Each expert gets its
    own copy of the tensors because diffusers' Wan converter rescales them in place.
    If the StoryMem LoRA is already fused, the style LoRA is fused too (peft skips
    unmerged adapters on a merged layer).
    """
    path = Path(path)
    if not math.isfinite(strength):
        raise LoraError(f"style LoRA strength for {path} must be a finite number, got {strength!r}")
    # peft keeps adapters in ModuleDicts: no dots in the name
    name = adapter_name or "style_" + re.sub(r"\W", "_", path.stem)
    tensors, _ = read_lora_file(path)
    if tensors and all(parse_key(k) is not None for k in tensors):
        raise LoraError(
            f"{path}: this is a StoryMem-layout LoRA (original Wan module names), not a style LoRA",
            hint="give it as the StoryMem LoRA (--lora), not as a style LoRA",
        )
    if experts not in ("both", "high", "low"):
        raise LoraError(f"style LoRA experts must be 'both', 'high' or 'low', got {experts!r}")
    targets: list[tuple[ExpertName, Any]] = []
    if experts in ("both", "high"):
        targets.append(("transformer", pipe.transformer))
    if experts in ("both", "low"):
        if getattr(pipe, "transformer_2", None) is None:
            if experts == "low":
                raise LoraError(f"{path}: the pipeline has no low-noise expert (transformer_2)")
        else:
            targets.append(("transformer_2", pipe.transformer_2))
    for expert, transformer in targets:
        if name in (getattr(transformer, "peft_config", None) or {}):
            raise LoraError(f"{path}: {expert} already has an adapter named {name!r}; pick another name")
    done: list[Any] = []
    try:
        for expert, transformer in targets:
            _load_style_into(pipe, expert, transformer, tensors, path, name, strength)
            done.append(transformer)
    except Exception:
        for transformer in done:  # both experts or neither
            adapters.remove_adapter(transformer, name)
        raise


def _load_style_into(
    pipe: Any, expert: str, transformer: Any, tensors: dict[str, Any], path: Path, name: str, strength: float
) -> None:
    fresh = {k: v.clone() for k, v in tensors.items()}
    # join_fused: a fused StoryMem LoRA stays fused and the style LoRA joins it (peft ignores
    # unmerged adapters on a merged layer)
    with adapters.adding_adapter(transformer, name, join_fused=True):
        try:
            pipe.load_lora_weights(fresh, adapter_name=name, load_into_transformer_2=expert == "transformer_2")
        except (ValueError, KeyError, RuntimeError) as e:
            raise LoraError(f"{path}: diffusers could not load it into {expert}: {e}") from e
        if _set_adapter_strength(transformer, name, strength) == 0:
            raise LoraError(
                f"{path}: diffusers loaded no LoRA layer from it into {expert}",
                hint="keys look like " + quote_keys(sorted(tensors)[:2]) + "; expected a diffusers or ComfyUI Wan LoRA",
            )


def _set_adapter_strength(transformer: torch.nn.Module, name: str, strength: float) -> int:
    """Scale adapter ``name`` by ``strength``; returns how many layers carry it."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = 0
    for module in transformer.modules():
        if isinstance(module, BaseTunerLayer) and name in getattr(module, "scaling", {}):
            module.set_scale(name, strength)
            layers += 1
    return layers
