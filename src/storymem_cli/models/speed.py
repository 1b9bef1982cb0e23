"""Fast modes on the experts, each diffusers' (or torchao's) own machinery: attention backend, step
caching, compilation, fp8. ``StoryModel`` applies them after the LoRAs are fused and before
offloading; every one is off by default, and then nothing here runs.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from storymem_cli.models.runtime import RuntimeOptions


def resolve_attention_backend(name: str | None, device: torch.device, dtype: torch.dtype) -> str | None:
    """``auto``: the fastest kernel that runs here and matches SDPA (models/attention_pick.py); any other
    name as given, a PyPI kernel's function handed to diffusers first (flash_4_hub, sage_hub)."""
    from storymem_cli.models.attention_pick import pick_backend, register_local_kernel

    if name == "auto":
        return pick_backend(device, dtype).backend
    problem = register_local_kernel(name) if name else None
    if problem:
        from storymem_cli.errors import InvalidInputError

        raise InvalidInputError(f"--attention {name}: {problem}", hint="install it, or leave --attention out (SDPA)")
    return name


def cache_config(runtime: RuntimeOptions) -> Any:
    """The diffusers cache config for ``--cache`` (None: off)."""
    if runtime.cache == "magcache" or runtime.magcache_calibrate is not None:  # per expert, set per shot
        from storymem_cli.models.magcache import placeholder_config

        return placeholder_config(runtime)
    if runtime.cache == "none":
        return None
    if runtime.cache == "first-block":
        from diffusers import FirstBlockCacheConfig

        return FirstBlockCacheConfig(threshold=runtime.cache_threshold)
    from diffusers import TaylorSeerCacheConfig

    from storymem_cli.models.step_cache import TAYLORSEER_WARMUP

    # Lite mode: between full steps the blocks are skipped and only the expert's output (proj_out: 64
    # values a token at A14B) is Taylor-extrapolated, ~24 MB per expert at 48,360 tokens. Keeping
    # every block's attn1 / attn2 / ffn outputs instead held 221 GiB per expert there.
    return TaylorSeerCacheConfig(
        cache_interval=runtime.cache_interval, disable_cache_before_step=TAYLORSEER_WARMUP, use_lite_mode=True
    )


# torchao's fp8 matmuls need Hopper/Ada tensor cores (compute capability 8.9: L4, L40, H100, H200).
FP8_MATMUL_CAPABILITY = (8, 9)


def fp8_method(device: torch.device, offload: str = "none", dtype: torch.dtype | None = None) -> str:
    """How ``--quantize fp8`` runs here: ``torchao`` (weights and activations in float8, matmuls in
    float8 with a scale per row) on a CUDA GPU with fp8 tensor cores when torchao is installed and the
    experts compute in ``dtype`` bfloat16 (None: the presets' bfloat16; torchao's per-row fp8 asserts
    bfloat16 weights, an AssertionError in float16 or float32), else
    ``layerwise`` (diffusers' layerwise casting: weights stored in float8, computed in the model's
    dtype; half the memory, no faster). With ``--offload group`` always layerwise: diffusers moves
    group-offloaded weights by reassigning ``param.data``, which torchao's tensor subclasses only
    survive in recent diffusers (huggingface/diffusers#13276), and a block streamed in fp8 is half the
    bytes either way."""
    import torch

    if offload == "group" or device.type != "cuda" or torch.cuda.get_device_capability(device) < FP8_MATMUL_CAPABILITY:
        return "layerwise"
    if dtype not in (None, torch.bfloat16):
        name = str(dtype).removeprefix("torch.")
        warnings.warn(
            f"--quantize fp8 with --dtype {name}: the weights are stored in float8 and computed in {name} "
            "(half the memory, no faster); fp8 matmuls (torchao) need --dtype bfloat16",
            stacklevel=2,
        )
        return "layerwise"
    try:
        import torchao.quantization  # noqa: F401
    except Exception:  # noqa: BLE001  not installed, or built for another torch: the storage-only path works anywhere
        return "layerwise"
    return "torchao"


def quantize_blocks_torchao(transformer: Any, config: Any = None) -> int:
    """Quantise the linear layers of the transformer blocks in place with torchao (default: fp8
    dynamic activations and weights, a scale per row); returns how many. Embeddings, the time and text
    projections and the output head stay in full precision: they are a sliver of the weights and the
    most sensitive to rounding."""
    import torch
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        PerRow,
        quantize_,
    )

    config = config or Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
    count = [0]

    def in_a_block(module: torch.nn.Module, name: str) -> bool:
        chosen = isinstance(module, torch.nn.Linear) and name.startswith("blocks.")
        count[0] += chosen
        return chosen

    quantize_(transformer, config, filter_fn=in_a_block)
    return count[0]


def apply_speed_options(transformer: Any, runtime: RuntimeOptions, compute_dtype: torch.dtype,
                        quantize_method: str = "layerwise") -> None:  # fmt: skip
    """fp8, the step cache and compilation on one expert, in that order (each is a hook or a
    wrapper around the blocks; compilation last so it traces the others). ``quantize_method``: what
    ``fp8_method`` chose for this device."""
    import torch

    if runtime.quantize == "fp8":
        if quantize_method == "torchao":
            quantize_blocks_torchao(transformer)
        else:  # norms and embeddings stay in full precision (diffusers' default skip list)
            transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=compute_dtype)
    config = cache_config(runtime)
    beneath = runtime.compile and type(config).__name__ == "MagCacheConfig"
    if beneath:  # its hooks would keep compile_repeated_blocks from compiling anything (magcache.py)
        from storymem_cli.models.magcache import compile_beneath_hooks

        compile_beneath_hooks(transformer)
    if config is not None:
        transformer.enable_cache(config)
        if runtime.cache == "first-block":
            from storymem_cli.models.step_cache import measure_shot_tokens_only

            measure_shot_tokens_only(transformer)
    if runtime.compile and not beneath:
        # The memory length changes from shot to shot (0 to 10 latent frames): dynamic shapes, not
        # one recompile per length.
        transformer.compile_repeated_blocks(dynamic=True)


def reset_step_cache(transformer: Any) -> None:
    """Forget the cached residuals of the last shot: a new shot starts from other noise."""
    if getattr(transformer, "is_cache_enabled", False):
        transformer._reset_stateful_cache()
