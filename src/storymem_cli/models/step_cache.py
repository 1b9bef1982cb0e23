"""What ``--cache`` needs beyond diffusers' hooks on Wan2.2's two experts at A14B size: the first-block
cache's change metric on the shot's own tokens, TaylorSeer's memory computed (and refused when it
cannot fit), each expert's cache freed once the expert has no step left, and a note where an expert
has too few steps for TaylorSeer to predict any. ``speed`` calls it only when a cache is on.

Imports diffusers at the top: only the cache paths import this module.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import torch
from diffusers.hooks import HookRegistry
from diffusers.hooks.first_block_cache import _FBC_LEADER_BLOCK_HOOK, FBCHeadBlockHook
from diffusers.hooks.taylorseer_cache import _TAYLORSEER_CACHE_HOOK

from storymem_cli.errors import InvalidInputError
from storymem_cli.models.speed import reset_step_cache
from storymem_cli.pipeline.sigmas import Expert, expert_for_timestep

GIB = 1024**3

# TaylorSeer's full steps before its first prediction (diffusers' default disable_cache_before_step):
# an expert with no more steps than this computes every step and saves nothing.
TAYLORSEER_WARMUP = 3


# --------------------------------------------------------------------------- first-block cache


def memory_tokens(transformer: Any, tokens: int) -> int:
    """How many of the sequence's ``tokens`` are memory: the first M of the M + T latent frames the
    pipeline set on the story rope (``pipeline.rope.rope_positions``); 0 outside an M2V call."""
    rope = getattr(transformer, "rope", None)
    positions = getattr(rope, "frame_positions", None)
    if not positions:
        return 0
    return tokens * getattr(rope, "memory_frames", 0) // len(positions)


class ShotTokensHeadBlockHook(FBCHeadBlockHook):
    """diffusers' first-block head hook with the change metric on the shot's tokens only. The stock
    metric averages over all M + T frames; memory frames change less from step to step (0.055
    against 0.075 on the toy model), so one threshold skipped more steps the more memory a shot had."""

    def __init__(self, state_manager: Any, threshold: float, transformer: Any):
        super().__init__(state_manager, threshold)
        self._transformer = weakref.ref(transformer)  # a strong one would tie the expert to its own block

    @torch.compiler.disable
    def _should_compute_remaining_blocks(self, hidden_states_residual: torch.Tensor) -> bool:
        previous = self.state_manager.get_state().head_block_residual
        if previous is None:
            return True
        skip = memory_tokens(self._transformer(), hidden_states_residual.shape[1])
        current, previous = hidden_states_residual[:, skip:], previous[:, skip:]
        change = (current - previous).abs().mean() / previous.abs().mean()
        return change.item() > self.threshold


def measure_shot_tokens_only(transformer: Any) -> None:
    """Swap the first-block cache's head hook (installed by ``enable_cache``) for
    :class:`ShotTokensHeadBlockHook`, sharing its state with the other blocks' hooks."""
    registry = HookRegistry.check_if_exists_or_initialize(transformer.blocks[0])
    stock = registry.get_hook(_FBC_LEADER_BLOCK_HOOK)
    registry.remove_hook(_FBC_LEADER_BLOCK_HOOK, recurse=False)
    registry.register_hook(
        ShotTokensHeadBlockHook(stock.state_manager, stock.threshold, transformer), _FBC_LEADER_BLOCK_HOOK
    )


# --------------------------------------------------------------------------- TaylorSeer's memory


def _output_width(module: torch.nn.Module) -> int:
    """Features of a module's output: a linear layer's, else its last linear layer's (attention's
    to_out, the feed-forward's down projection)."""
    linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ValueError(f"no linear layer in {type(module).__name__}: its output width is unknown")
    return linears[-1].out_features


def taylorseer_cached_widths(transformer: Any) -> list[int]:
    """The output width of every module whose outputs TaylorSeer keeps (those it only skips keep a
    shape), read from the hooks ``enable_cache`` installed."""
    widths = []
    for module in transformer.modules():
        registry = getattr(module, "_diffusers_hook", None)
        hook = registry.get_hook(_TAYLORSEER_CACHE_HOOK) if registry is not None else None
        if hook is not None and not hook.state_manager._init_kwargs["is_inactive"]:
            widths.append(_output_width(module))
    return widths


def taylorseer_bytes(transformer: Any, tokens: int, branches: int) -> int:
    """Bytes one expert's TaylorSeer cache holds at ``tokens`` tokens: tokens x the cached modules'
    widths x Taylor terms x guidance branches (cond, uncond) x bytes per value."""
    config = transformer._cache_config
    element = torch.empty(0, dtype=config.taylor_factors_dtype).element_size()
    return tokens * sum(taylorseer_cached_widths(transformer)) * (config.max_order + 1) * branches * element


def check_taylorseer_fits(transformer: Any, tokens: int, branches: int, device: torch.device) -> int:
    """Refuse a TaylorSeer cache larger than the GPU's free memory (where it is known); its bytes."""
    needed = taylorseer_bytes(transformer, tokens, branches)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        if needed > free:
            raise InvalidInputError(
                f"--cache taylorseer needs {needed / GIB:.1f} GiB per expert at {tokens:,} tokens "
                f"({branches} guidance branch(es)), but {device} has {free / GIB:.1f} GiB free",
                hint="use --cache first-block or --cache none, or a smaller --size / --frames",
            )
    return needed


# --------------------------------------------------------------------------- per expert, per shot


def experts_of(timesteps: Sequence[Any], boundary_ratio: float) -> list[Expert]:
    """The expert of every step (Wan2.2's switch: high noise for t >= boundary)."""
    return [expert_for_timestep(float(t), boundary_ratio) for t in timesteps]


def free_finished_experts(pipe: Any, step: int, boundary_ratio: float) -> None:
    """After ``step``: free the cache of each expert with no step left in this shot, so the
    high-noise expert's is gone while the low-noise expert runs and both are before the VAE decode."""
    left = set(experts_of(pipe.scheduler.timesteps[step + 1 :], boundary_ratio))
    for expert, transformer in (("high", pipe.transformer), ("low", pipe.transformer_2)):
        if expert not in left:
            reset_step_cache(transformer)


def steps_without_prediction(timesteps: Sequence[Any], boundary_ratio: float) -> dict[Expert, int]:
    """Experts that run at least one step of this shot but no more than TaylorSeer's warm-up: there it
    computes every step. Values: the expert's steps."""
    experts = experts_of(timesteps, boundary_ratio)
    counts = {expert: experts.count(expert) for expert in ("high", "low")}
    return {expert: n for expert, n in counts.items() if 0 < n <= TAYLORSEER_WARMUP}
