"""CFG parallelism (``--parallel cfg``): the conditional and unconditional passes on different ranks.

Classifier-free guidance runs every expert twice per step, on the same latents and timestep, once with
the prompt and once with the negative prompt. With N processes the first half of the ranks computes
the conditional pass and the second half the unconditional one, each half splitting its forward by
diffusers' Ulysses / ring (models/parallel.py) when it has more than one process; one all-gather
between the two halves per step then gives every rank both predictions. Compared with Ulysses over
all N, that is one collective per step instead of all-to-alls in every layer.

The pipelines (diffusers' ``WanPipeline`` and our M2V one) stay as they are: a diffusers hook on each
expert answers both calls of a step. At the conditional call, the second half swaps in the negative
prompt's embeddings (:func:`set_negative`, before each shot) and both halves compute, then gather; the
unconditional call that follows (same latents and timestep objects, the negative embeddings) gets the
gathered prediction without computing. Any other call is computed as a conditional one, so a step
without guidance is still right (the second half's work is then wasted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storymem_cli.errors import InvalidInputError

HOOK_NAME = "storymem_cfg_parallel"


@dataclass(frozen=True)
class CfgSplit:
    """This rank's share: which pass it computes (0: conditional, 1: unconditional), the group of the
    two ranks (one per half) that exchange predictions, and the mesh of its half (None: one process)."""

    branch: int
    pair_group: Any
    half_mesh: Any


def half_world(world: int) -> int:
    """Processes per pass: half of them; an odd count cannot be halved."""
    if world % 2:
        raise InvalidInputError(
            f"--parallel cfg over {world} processes: the conditional and unconditional passes need two equal halves",
            hint="use an even process count (2, 4, 8), or --parallel ulysses",
        )
    return world // 2


def split(device_type: str, world: int, inner: Any) -> CfgSplit:
    """The mesh (cfg x ring x ulysses) and this rank's share of it; ``inner``: the degrees inside a half."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(device_type, (2, inner.ring, inner.ulysses), mesh_dim_names=("cfg", "ring", "ulysses"))
    branch = dist.get_rank() // (world // 2)
    return CfgSplit(branch=branch, pair_group=mesh.get_group("cfg"), half_mesh=mesh["ring", "ulysses"] if world > 2 else None)


class CfgParallelHook:
    """The diffusers hook on one expert (built by :func:`enable_cfg_parallel`)."""

    def __init__(self, share: CfgSplit):
        self.share = share
        self.negative: Any = None
        self.pending: tuple[Any, Any, Any] | None = None  # (latents, timestep, unconditional output)

    def forward(self, original: Any, kwargs: dict[str, Any]) -> Any:
        import torch

        hidden, timestep, text = kwargs.get("hidden_states"), kwargs.get("timestep"), kwargs.get("encoder_hidden_states")
        if hidden is None or text is None:
            raise InvalidInputError("--parallel cfg: the expert was called without keyword hidden_states / encoder_hidden_states")
        if self.negative is None:
            raise InvalidInputError("--parallel cfg: no negative prompt embeddings set for this shot")
        negative = self.negative.to(device=text.device, dtype=text.dtype)
        pending, self.pending = self.pending, None
        if pending is not None and pending[0] is hidden and pending[1] is timestep and torch.equal(text, negative):
            return pending[2]
        mine = original(**{**kwargs, "encoder_hidden_states": negative if self.share.branch else text})
        sample = mine[0] if isinstance(mine, tuple) else mine.sample
        both = [torch.empty_like(sample) for _ in range(2)]
        import torch.distributed as dist

        dist.all_gather(both, sample.contiguous(), group=self.share.pair_group)  # the one collective of the step
        self.pending = (hidden, timestep, _like(mine, both[1]))
        return _like(mine, both[0])


def _like(output: Any, sample: Any) -> Any:
    """``sample`` in the shape the expert returned its output: a tuple, or an output object."""
    if isinstance(output, tuple):
        return (sample, *output[1:])
    return type(output)(sample=sample)


def enable_cfg_parallel(transformer: Any, share: CfgSplit) -> CfgParallelHook:
    from diffusers.hooks import HookRegistry, ModelHook

    state = CfgParallelHook(share)

    class _Hook(ModelHook):
        def new_forward(self, module: Any, *args: Any, **kwargs: Any) -> Any:
            if args:
                raise InvalidInputError("--parallel cfg: the expert was called with positional arguments")
            return state.forward(self.fn_ref.original_forward, kwargs)

    HookRegistry.check_if_exists_or_initialize(transformer).register_hook(_Hook(), HOOK_NAME)
    transformer._storymem_cfg = state
    return state


def set_negative(transformers: Any, negative: Any) -> None:
    """Before each shot: the negative prompt's embeddings the unconditional pass uses (no-op without CFG parallel)."""
    for transformer in transformers:
        state = getattr(transformer, "_storymem_cfg", None)
        if state is not None:
            state.negative, state.pending = negative, None
