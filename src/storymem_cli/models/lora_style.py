"""A user's style LoRA (a diffusers / ComfyUI / kohya / lightx2v Wan LoRA) on one or both experts.

The file's layout is read from its header first (``lora_layout``). diffusers' own Wan loader reads the
file by path wherever its converter takes the layout, so the alpha and rank that ``save_lora_weights``
writes into the safetensors metadata reach peft; the layouts it cannot take (kohya without alphas or
with some layers only, Wan names without a prefix) are handed over as renamed tensors. Afterwards
every key is accounted for: what diffusers did not place is named in a warning and in the report for
run.json, and a file mostly not applied is refused. This module adds the strength and the
both-experts-or-neither rule.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from storymem_cli.models import lora_adapters as adapters
from storymem_cli.models.lora_files import LoraError, quote_keys, read_lora_file
from storymem_cli.models.lora_layout import StyleLayout, classify, read_header
from storymem_cli.models.runtime import StyleExperts

if TYPE_CHECKING:
    import torch


ExpertName = Literal["transformer", "transformer_2"]


def inspect_style_lora(path: str | Path) -> StyleLayout:
    """The layout of a style LoRA file and what of it will be applied; :class:`LoraError` naming the
    file when it cannot be a style LoRA. Reads the header only for ``.safetensors``."""
    path = Path(path)
    if not path.is_file():
        raise LoraError(f"style LoRA {path}: no such file" if not path.exists() else f"style LoRA {path}: not a file")
    if path.suffix.lower() == ".safetensors":
        shapes, _ = read_header(path)
        return classify(path, shapes)
    tensors, _ = read_lora_file(path)  # .pth: torch.load(weights_only=True)
    layout = classify(path, {k: tuple(v.shape) for k, v in tensors.items()})
    if layout.by_path:  # diffusers reads .safetensors files only; the same keys as tensors
        layout.by_path = False
        layout.rename = {k: k for k in tensors if k not in layout.dropped}
    return layout


def load_style_lora(
    pipe: Any,
    path: str | Path,
    strength: float,
    *,
    adapter_name: str | None = None,
    experts: StyleExperts = "both",
) -> dict[str, Any]:
    """Apply a style LoRA to both experts of ``pipe`` with ``strength`` as the adapter's weight.

    ``experts="high"`` / ``"low"`` puts it on ``transformer`` / ``transformer_2`` only, for Wan2.2
    LoRAs that ship one file per expert. If the StoryMem LoRA is already fused, the style LoRA is
    fused too (peft skips unmerged adapters on a merged layer); the model loader instead loads every
    LoRA unfused and fuses once.

    Returns the report for run.json: ``layout``, ``loaded_by`` (``path`` or ``renamed keys``),
    ``keys``, ``applied_keys``, ``dropped_keys`` and ``dropped`` (reason -> count).
    """
    path = Path(path)
    if not math.isfinite(strength):
        raise LoraError(f"style LoRA strength for {path} must be a finite number, got {strength!r}")
    if experts not in ("both", "high", "low"):
        raise LoraError(f"style LoRA experts must be 'both', 'high' or 'low', got {experts!r}")
    # peft keeps adapters in ModuleDicts: no dots in the name
    name = adapter_name or "style_" + re.sub(r"\W", "_", path.stem)
    layout = inspect_style_lora(path)
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
    tensors = None
    if not layout.by_path:
        tensors, _ = read_lora_file(path)
    dropped: dict[str, str] = dict(layout.dropped)
    done: list[Any] = []
    try:
        for expert, transformer in targets:
            dropped.update(_load_style_into(pipe, expert, transformer, layout, tensors, name, strength))
            done.append(transformer)
    except Exception:
        for transformer in done:  # both experts or neither
            adapters.remove_adapter(transformer, name)
        raise
    if dropped:
        reasons = _count_reasons(dropped)
        warnings.warn(
            f"style LoRA {path}: {len(dropped)} of {len(layout.sizes)} keys not applied "
            f"({'; '.join(f'{n} x {why}' for why, n in reasons.items())}), e.g. {quote_keys(sorted(dropped))}",
            stacklevel=2,
        )
    return {
        "layout": layout.layout,
        "loaded_by": "path" if layout.by_path else "renamed keys",
        "keys": len(layout.sizes),
        "applied_keys": len(layout.sizes) - len(dropped),
        "dropped_keys": len(dropped),
        "dropped": _count_reasons(dropped),
    }


def _count_reasons(dropped: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for why in dropped.values():
        counts[why] = counts.get(why, 0) + 1
    return dict(sorted(counts.items()))


def _load_style_into(
    pipe: Any,
    expert: ExpertName,
    transformer: Any,
    layout: StyleLayout,
    tensors: dict[str, Any] | None,
    name: str,
    strength: float,
) -> dict[str, str]:
    """Load into one expert; returns the keys diffusers did not place there (key -> why)."""
    if layout.by_path:
        source: Any = str(layout.path.parent)
        kwargs: dict[str, Any] = {"weight_name": layout.path.name, "local_files_only": True}
    else:  # a fresh copy per expert: diffusers' converter rescales tensors in place
        assert tensors is not None
        source = {new: tensors[old].clone() for old, new in layout.rename.items()}
        kwargs = {}
    # join_fused: a fused StoryMem LoRA stays fused and the style LoRA joins it (peft ignores
    # unmerged adapters on a merged layer)
    with adapters.adding_adapter(transformer, name, join_fused=True):
        try:
            pipe.load_lora_weights(source, adapter_name=name, load_into_transformer_2=expert == "transformer_2", **kwargs)
        except (ValueError, KeyError, RuntimeError, AttributeError) as e:
            raise LoraError(
                f"{layout.path}: diffusers could not load it into {expert} (read as a {layout.layout} layout "
                f"LoRA): {e}",
                hint="a LoRA for another model size, or a damaged file",
            ) from e
        missing = _not_placed(transformer, layout, name)
        layout.check_dropped({**layout.dropped, **missing}, where=f" in {expert}")
        _set_adapter_strength(transformer, name, strength)
    return missing


def _not_placed(transformer: torch.nn.Module, layout: StyleLayout, name: str) -> dict[str, str]:
    """File keys whose layer did not get the adapter (or its bias) in ``transformer``."""
    missing: dict[str, str] = {}
    for module_name, keys in layout.targets.items():
        try:
            module = transformer.get_submodule(module_name)
        except AttributeError:
            module = None
        lora_b = getattr(module, "lora_B", {})
        if name not in lora_b:
            why = f"diffusers placed no LoRA on {module_name}" if module is not None else f"no layer {module_name} here"
            missing.update(dict.fromkeys(keys, why))
        elif module_name in layout.bias_targets and lora_b[name].bias is None:
            missing.update(dict.fromkeys((k for k in keys if k.endswith(("diff_b", "lora_B.bias"))), "bias not placed"))
    return missing


def _set_adapter_strength(transformer: torch.nn.Module, name: str, strength: float) -> int:
    """Scale adapter ``name`` by ``strength``; returns how many layers carry it."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = 0
    for module in transformer.modules():
        if isinstance(module, BaseTunerLayer) and name in getattr(module, "scaling", {}):
            module.set_scale(name, strength)
            layers += 1
    return layers
