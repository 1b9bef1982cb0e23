"""StoryMem LoRA: check the published files and put them on the two experts (SPEC 5).

Why not ``pipe.load_lora_weights``: with the release's peft-style keys diffusers
0.42 loads nothing (a warning only), and its Wan converter uses alpha/r instead
of rsLoRA's alpha/sqrt(r). So the keys are mapped here (``lora_keys``), every
tensor of both files is checked against the transformers before anything is
touched, and peft injects a real, unfuse-able LoRA adapter (``use_rslora=True``)
named ``storymem``. :func:`save_storymem_lora` writes the same layout back.

The rest lives beside this module and is re-exported here: finding and reading
files (``lora_files``), a user's style LoRA through diffusers' own loader
(``lora_style``), peft adapter bookkeeping (``lora_adapters``).

torch, peft, safetensors and diffusers are imported inside the functions: the
CLI imports these names without paying for them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storymem_cli.models import lora_adapters as adapters
from storymem_cli.models.lora_adapters import fuse_active_adapters
from storymem_cli.models.lora_files import (
    EXPERT_FILE_STEMS,
    MAX_LISTED,
    STORYMEM_HUB_REPO,
    STORYMEM_VARIANT_DIRS,
    LoraError,
    file_sha256,
    find_storymem_lora_files,
    quote_keys,
    read_lora_file,
)
from storymem_cli.models.lora_keys import (
    DIFFUSERS_TARGET_REGEX,
    TENSORS_PER_BLOCK,
    LoraKey,
    expected_keys,
    parse_key,
    parse_peft_key,
)
from storymem_cli.models.lora_style import load_style_lora

if TYPE_CHECKING:
    import torch

__all__ = [
    "STORYMEM_ADAPTER_NAME",
    "STORYMEM_HUB_REPO",
    "STORYMEM_LORA_ALPHA",
    "STORYMEM_VARIANT_DIRS",
    "LoraError",
    "LoraPlan",
    "check_storymem_lora",
    "find_storymem_lora_files",
    "fuse_active_adapters",
    "inject_storymem_lora",
    "load_storymem_lora",
    "load_style_lora",
    "read_lora_file",
    "rslora_scale",
    "save_storymem_lora",
    "storymem_lora_state_dict",
]

STORYMEM_ADAPTER_NAME = "storymem"
# The release's LoRA config (its wan/configs/wan_m2v_A14B.py, SPEC 5): r=128, lora_alpha=128,
# use_rslora=True, and its pipeline.py sets lora_alpha = r for any --lora_rank. Its files carry no
# alpha, so a file without one gets alpha = its rank (read from the tensors): 128 for the release.
STORYMEM_LORA_ALPHA = 128.0
_ALPHA_METADATA_KEY = "lora_alpha"  # written by save_storymem_lora, honoured by the loader
# Where the alpha in run.json came from (model.storymem_lora.alpha_source).
ALPHA_FROM_ARGUMENT, ALPHA_FROM_FILE, ALPHA_FROM_RANK = "argument", "file metadata", "rank (the release's alpha = r)"


def rslora_scale(alpha: float, rank: int) -> float:
    """rsLoRA's multiplier of ``B @ A``: alpha / sqrt(r) (128 / sqrt(128) = 11.31)."""
    return alpha / math.sqrt(rank)


# --------------------------------------------------------------------------- checking


@dataclass
class LoraPlan:
    """A fully checked StoryMem LoRA for one transformer: nothing left to go wrong but I/O."""

    source: str
    rank: int
    keys: dict[str, LoraKey] = field(default_factory=dict)  # file key -> parsed key

    @property
    def tensors(self) -> int:
        return len(self.keys)


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in (value.shape if hasattr(value, "shape") else value))


def _linear_features(transformer: Any, module_name: str) -> tuple[int, int] | None:
    try:
        module = transformer.get_submodule(module_name)
    except AttributeError:
        return None
    module = getattr(module, "base_layer", module)  # already wrapped by peft
    if not hasattr(module, "in_features"):
        return None
    return int(module.in_features), int(module.out_features)


def check_storymem_lora(tensors: Mapping[str, Any], transformer: Any, *, source: str) -> LoraPlan:
    """Check a published-layout LoRA (tensors or shapes) against a diffusers Wan transformer.

    Raises :class:`LoraError` for an unknown key, a duplicate after normalisation, a
    block that is missing some of its 20 tensors or lies past the last block, an
    inconsistent rank, or a shape that does not fit the layer. Works on a model built
    on the ``meta`` device (only module shapes are read).
    """
    if not tensors:
        raise LoraError(f"{source}: the file holds no tensors")
    unknown = [k for k in tensors if parse_key(k) is None]
    if unknown:
        raise LoraError(
            f"{source}: {len(unknown)} key(s) that are not StoryMem LoRA tensors, e.g. {quote_keys(unknown)}",
            hint="expected base_model.model.blocks.{i}.{self_attn|cross_attn}.{q,k,v,o} or ffn.{0,2}"
            ".lora_{A,B}.weight; a diffusers-format style LoRA goes to --style-lora instead",
        )
    keys: dict[str, LoraKey] = {}
    seen: dict[LoraKey, str] = {}
    for key in tensors:
        parsed = parse_key(key)
        assert parsed is not None
        if parsed in seen:
            raise LoraError(f"{source}: {key!r} and {seen[parsed]!r} are the same tensor after normalisation")
        seen[parsed] = key
        keys[key] = parsed

    num_blocks = len(transformer.blocks)
    beyond = sorted({p.block for p in seen if p.block >= num_blocks})
    if beyond:
        raise LoraError(
            f"{source}: LoRA for block(s) {beyond[:MAX_LISTED]} but the transformer has {num_blocks} blocks",
            hint="this LoRA was trained for a bigger model than the one loaded",
        )
    missing = [k for k in expected_keys(num_blocks) if k not in seen]
    if missing:
        blocks = sorted({k.block for k in missing})
        first = [k for k in missing if k.block == blocks[0]]
        raise LoraError(
            f"{source}: {len(missing)} LoRA tensor(s) missing in {len(blocks)} block(s) "
            f"(each block needs {TENSORS_PER_BLOCK}); block {blocks[0]} lacks {quote_keys([k.published_key for k in first])}",
            hint="a truncated download, or a LoRA for a smaller model than the one loaded",
        )

    rank: int | None = None
    for key, parsed in keys.items():
        shape = _shape(tensors[key])
        if len(shape) != 2:
            raise LoraError(f"{source}: {key} has shape {list(shape)}, expected a 2-D matrix")
        r = shape[0] if parsed.factor == "A" else shape[1]
        if rank is None:
            rank = r
        elif r != rank:
            raise LoraError(f"{source}: {key} has rank {r} but other tensors have rank {rank}")
    assert rank is not None

    for key, parsed in keys.items():
        features = _linear_features(transformer, parsed.diffusers_module)
        if features is None:
            raise LoraError(f"{source}: {key} maps to {parsed.diffusers_module}, which is not a linear layer here")
        in_f, out_f = features
        expected = (rank, in_f) if parsed.factor == "A" else (out_f, rank)
        got = _shape(tensors[key])
        if got != expected:
            raise LoraError(
                f"{source}: {key} has shape {list(got)} but {parsed.diffusers_module} "
                f"({in_f} -> {out_f}) needs {list(expected)}",
                hint="this LoRA was trained for a different model size",
            )
    return LoraPlan(source=source, rank=rank, keys=keys)


# --------------------------------------------------------------------------- loading


def load_storymem_lora(
    transformer_high: torch.nn.Module,
    transformer_low: torch.nn.Module,
    high_file: str | Path,
    low_file: str | Path,
    *,
    fuse: bool = False,
    alpha: float | None = None,
    adapter_name: str = STORYMEM_ADAPTER_NAME,
) -> dict[str, Any]:
    """Put the StoryMem LoRA on both experts: ``high_file`` on ``transformer`` (high noise),
    ``low_file`` on ``transformer_2`` (low noise). Both files are read and checked in full
    before either expert is touched. ``fuse=True`` merges the LoRA into both experts'
    weights (peft merge: still unfuse-able).

    Returns a report for ``run.json``: ``adapter_name``, ``fused``, ``rslora``, and
    ``files`` / ``sha256`` / ``tensors`` keyed by expert (``transformer``,
    ``transformer_2``); ``rank``, ``alpha``, ``scale`` as one number when both experts
    agree, else keyed by expert.

    ``alpha`` defaults to the file's ``lora_alpha`` metadata if it has one, else the
    rank, as the release sets it (``alpha_source`` in the report says which); the scale is
    rsLoRA's alpha / sqrt(r).
    """
    pairs = [("transformer", transformer_high, Path(high_file)), ("transformer_2", transformer_low, Path(low_file))]
    for name, _, path in pairs:
        other = EXPERT_FILE_STEMS["transformer_2" if name == "transformer" else "transformer"]
        if path.name.startswith(other):
            raise LoraError(
                f"{path} is the {other} file but was given for {name}",
                hint="backbone_high_noise goes to transformer, backbone_low_noise to transformer_2",
            )
    staged = []
    for name, transformer, path in pairs:
        if adapter_name in (getattr(transformer, "peft_config", None) or {}):
            raise LoraError(f"{name} already has a LoRA adapter named {adapter_name!r}")
        tensors, metadata = read_lora_file(path)
        plan = check_storymem_lora(tensors, transformer, source=str(path))
        file_alpha = _alpha_from_metadata(metadata, path)
        if alpha is not None:
            chosen = (alpha, ALPHA_FROM_ARGUMENT)
        elif file_alpha is not None:
            chosen = (file_alpha, ALPHA_FROM_FILE)
        else:
            chosen = (float(plan.rank), ALPHA_FROM_RANK)
        staged.append((name, transformer, path, tensors, plan, chosen))

    done: list[torch.nn.Module] = []
    try:
        for _, transformer, _, tensors, plan, (use_alpha, _source) in staged:
            inject_storymem_lora(transformer, tensors, plan, alpha=use_alpha, adapter_name=adapter_name)
            done.append(transformer)
    except Exception:
        for transformer in done:  # both experts or neither
            adapters.remove_adapter(transformer, adapter_name)
        raise
    if fuse:
        for transformer in done:
            transformer.fuse_lora(adapter_names=[adapter_name])

    ranks = {name: plan.rank for name, _, _, _, plan, _ in staged}
    alphas = {name: use_alpha for name, *_, (use_alpha, _source) in staged}
    sources = {name: source for name, *_, (_alpha, source) in staged}
    scales = {name: rslora_scale(alphas[name], ranks[name]) for name in ranks}
    return {
        "adapter_name": adapter_name,
        "fused": fuse,
        "rslora": True,
        "files": {name: str(path.resolve()) for name, _, path, *_ in staged},
        "sha256": {name: file_sha256(path) for name, _, path, *_ in staged},
        "tensors": {name: plan.tensors for name, _, _, _, plan, _ in staged},
        "rank": _one_or_per_expert(ranks),
        "alpha": _one_or_per_expert(alphas),
        "alpha_source": _one_or_per_expert(sources),
        "scale": _one_or_per_expert(scales),
    }


def _one_or_per_expert(values: dict[str, Any]) -> Any:
    """The value when both experts agree (the release: always), else the per-expert dict."""
    distinct = set(values.values())
    return distinct.pop() if len(distinct) == 1 else values


def _alpha_from_metadata(metadata: Mapping[str, str], path: Path) -> float | None:
    if _ALPHA_METADATA_KEY not in metadata:
        return None
    try:
        return float(metadata[_ALPHA_METADATA_KEY])
    except ValueError as e:
        raise LoraError(
            f"{path}: metadata {_ALPHA_METADATA_KEY}={metadata[_ALPHA_METADATA_KEY]!r} is not a number"
        ) from e


def inject_storymem_lora(
    transformer: torch.nn.Module,
    tensors: Mapping[str, torch.Tensor],
    plan: LoraPlan,
    *,
    alpha: float,
    adapter_name: str = STORYMEM_ADAPTER_NAME,
) -> None:
    """Add a peft rsLoRA adapter to a checked transformer and set its weights from ``tensors``."""
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    config = LoraConfig(
        r=plan.rank,
        lora_alpha=alpha,
        use_rslora=True,
        target_modules=DIFFUSERS_TARGET_REGEX,
        lora_dropout=0.0,  # the release's 0.05 is for training only
        bias="none",
    )
    peft_state = {parsed.peft_key: tensors[key] for key, parsed in plan.keys.items()}
    # low_cpu_mem_usage: adapters are created on the meta device and the file's tensors are
    # assigned (then moved to the layer's device and dtype), no random init of 2 x 613M values.
    with adapters.adding_adapter(transformer, adapter_name, join_fused=False):
        inject_adapter_in_model(config, transformer, adapter_name=adapter_name, low_cpu_mem_usage=True)
        result = set_peft_model_state_dict(transformer, peft_state, adapter_name, low_cpu_mem_usage=True)
        missing = [k for k in result.missing_keys if f".{adapter_name}." in k]
        if result.unexpected_keys or missing:
            raise LoraError(
                f"{plan.source}: peft did not take every tensor "
                f"(unexpected {quote_keys(list(result.unexpected_keys))}, missing {quote_keys(missing)})"
            )
        transformer._hf_peft_config_loaded = True  # so diffusers' fuse/unfuse/set_adapters see the adapter


# --------------------------------------------------------------------------- saving


def storymem_lora_state_dict(
    transformer: torch.nn.Module, adapter_name: str = STORYMEM_ADAPTER_NAME
) -> dict[str, torch.Tensor]:
    """The adapter's tensors in the published key layout (the inverse of the loader's mapping)."""
    out: dict[str, torch.Tensor] = {}
    for name, param in transformer.named_parameters():
        parsed = parse_peft_key(name, adapter_name)
        if parsed is not None:
            out[parsed.published_key] = param.detach().to("cpu").contiguous()
    if not out:
        raise LoraError(f"the transformer has no LoRA adapter named {adapter_name!r} on the StoryMem target layers")
    check_storymem_lora(out, transformer, source=f"adapter {adapter_name!r}")
    return out


def save_storymem_lora(
    transformer: torch.nn.Module, path: str | Path, adapter_name: str = STORYMEM_ADAPTER_NAME
) -> Path:
    """Write the adapter as ``.safetensors`` in the published layout, with its alpha in the metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise LoraError(f"{path}: StoryMem LoRAs are saved as .safetensors")
    state = storymem_lora_state_dict(transformer, adapter_name)
    config = transformer.peft_config[adapter_name]
    if not config.use_rslora:
        raise LoraError(f"adapter {adapter_name!r} is not rsLoRA; the StoryMem layout implies alpha/sqrt(r)")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={_ALPHA_METADATA_KEY: str(float(config.lora_alpha))})
    return path
