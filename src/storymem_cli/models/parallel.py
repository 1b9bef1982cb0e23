"""Context parallelism on the Wan experts: diffusers' Ulysses / ring attention (``enable_parallelism``).

Every rank holds both experts whole and the full latent sequence; diffusers' context-parallel plan for
``WanTransformer3DModel`` splits the tokens after the ``rope`` module (so the story rope's tables are
split with the tokens they belong to, SPEC 3) and gathers them at ``proj_out``. Ulysses trades heads for
sequence with all-to-all (the head count must divide by its degree); ring passes key/value chunks and
needs an attention backend that returns log-sum-exp (flash, _native_cudnn, sage: GPU only).

This module knows nothing of processes: render/parallel.py starts torch.distributed and calls
:func:`activate`; :class:`StoryModel` calls :func:`enable_context_parallel` on each expert it loads.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from storymem_cli.errors import InvalidInputError

ParallelMode = Literal["auto", "ulysses", "ring", "cfg"]
PARALLEL_MODES: tuple[str, ...] = ("auto", "ulysses", "ring", "cfg")
SPATIAL_STRIDE = 16  # pixels per token side: Wan's VAE (x8) then the patch (x2), A14B and tiny alike


@dataclass(frozen=True)
class ParallelDegrees:
    ulysses: int
    ring: int
    cfg: int = 1  # 2: the conditional and unconditional passes on separate halves (models/parallel_cfg.py)

    @property
    def world(self) -> int:
        return self.cfg * self.ulysses * self.ring

    def as_dict(self) -> dict[str, int]:
        return {"world_size": self.world, "ulysses": self.ulysses, "ring": self.ring, "cfg": self.cfg}


def pick_degrees(world: int, heads: int, mode: ParallelMode = "auto") -> ParallelDegrees:
    """Split ``world`` processes into Ulysses x ring degrees for a model with ``heads`` attention heads.

    auto: as much Ulysses as the heads allow (one all-to-all per attention, no extra attention passes),
    the rest ring; 40 heads (A14B) make 2, 4, 5, 8 and 10 processes pure Ulysses.
    """
    if world < 1:
        raise InvalidInputError(f"world size {world}: must be at least 1")
    if mode == "cfg":  # two halves, each split as auto splits it
        from storymem_cli.models.parallel_cfg import half_world

        inner = pick_degrees(half_world(world), heads, "auto")
        return ParallelDegrees(ulysses=inner.ulysses, ring=inner.ring, cfg=2)
    if mode == "ring":
        return ParallelDegrees(ulysses=1, ring=world)
    if mode == "ulysses":
        if heads % world:
            raise InvalidInputError(
                f"--parallel ulysses: the model's {heads} attention heads do not divide into {world} processes",
                hint="use --parallel auto (Ulysses as far as the heads allow, the rest ring) or another process count",
            )
        return ParallelDegrees(ulysses=world, ring=1)
    if mode != "auto":
        raise InvalidInputError(f"--parallel {mode!r}: use one of {', '.join(PARALLEL_MODES)}")
    ulysses = math.gcd(world, heads)
    return ParallelDegrees(ulysses=ulysses, ring=world // ulysses)


def check_sequence_split(world: int, width: int, height: int) -> None:
    """Every latent frame's tokens split evenly over ``world`` processes, so M + T frames do for every M."""
    tokens = (width // SPATIAL_STRIDE) * (height // SPATIAL_STRIDE)
    if world > 1 and tokens % world:
        raise InvalidInputError(
            f"--size {width}x{height}: {tokens} tokens per latent frame do not split evenly over {world} processes",
            hint=f"pick a size whose (width/{SPATIAL_STRIDE}) x (height/{SPATIAL_STRIDE}) divides by {world}, "
            "e.g. 832x480 (1560 tokens) for 2, 3, 4, 5, 6 or 8 processes",
        )


@dataclass
class _State:
    world: int = 1
    mode: ParallelMode = "auto"
    device_type: str = "cpu"
    meshes: dict | None = None
    used: ParallelDegrees | None = None  # the degrees of the last expert made parallel (run.json)


_STATE = _State()


def activate(world: int, mode: ParallelMode, device_type: str) -> None:
    """From now on every expert loaded is split over the ``world`` processes of the default group."""
    _STATE.world, _STATE.mode, _STATE.device_type = world, mode, device_type
    _STATE.meshes, _STATE.used = {}, None


def deactivate() -> None:
    _STATE.world, _STATE.meshes, _STATE.used = 1, None, None


def active_degrees() -> ParallelDegrees | None:
    """The degrees in use (None: one process, or no expert loaded yet)."""
    return _STATE.used


def world_size() -> int:
    return _STATE.world


def _mesh(degrees: ParallelDegrees) -> Any:
    # One mesh per degrees for the whole process: building one creates process groups, a collective
    # every rank must join in the same order (they load the same experts in the same order).
    if degrees not in _STATE.meshes:
        from torch.distributed.device_mesh import init_device_mesh

        if degrees.cfg > 1:  # a CfgSplit: the pair of ranks that exchange predictions, the mesh of this half
            from storymem_cli.models.parallel_cfg import split

            _STATE.meshes[degrees] = split(_STATE.device_type, degrees.world, degrees)
        else:
            _STATE.meshes[degrees] = init_device_mesh(
                _STATE.device_type, (degrees.ring, degrees.ulysses), mesh_dim_names=("ring", "ulysses")
            )
    return _STATE.meshes[degrees]


@contextmanager
def _cpu_device_count() -> Any:
    # diffusers 0.42 picks each rank's device as ``rank % torch.accelerator.device_count()``, a division
    # by zero on a machine without an accelerator; the device it picks is only recorded, the mesh we
    # pass decides where the collectives run. So on such a machine it is told there is one device.
    import torch

    if torch.accelerator.device_count() > 0:
        yield
        return
    from unittest import mock

    with mock.patch.object(torch.accelerator, "device_count", return_value=1):
        yield


def enable_context_parallel(transformer: Any) -> None:
    """Make one expert context parallel over the active processes; nothing with one process.

    Call after its attention backend is set and its story rope installed: diffusers checks the backend
    and hooks the module named ``rope`` here.
    """
    if _STATE.meshes is None or _STATE.world == 1:
        return
    from diffusers import ContextParallelConfig

    degrees = pick_degrees(_STATE.world, transformer.config.num_attention_heads, _STATE.mode)
    if degrees.ring > 1 and _STATE.device_type == "cpu":
        # diffusers' native (SDPA) backend raises "Native attention does not support return_lse=True".
        raise InvalidInputError(
            f"context parallelism over {_STATE.world} processes on the CPU: ring attention (degree {degrees.ring}) "
            "needs an attention backend that returns log-sum-exp, and those run on GPUs only",
            hint=f"on the CPU use a process count that divides the model's {transformer.config.num_attention_heads} "
            "attention heads (pure Ulysses)",
        )
    mesh = _mesh(degrees)
    if degrees.ulysses * degrees.ring > 1:
        half_mesh = mesh.half_mesh if degrees.cfg > 1 else mesh
        config = ContextParallelConfig(ulysses_degree=degrees.ulysses, ring_degree=degrees.ring, mesh=half_mesh)
        try:
            with _cpu_device_count():
                transformer.enable_parallelism(config=config)
        except ValueError as err:  # e.g. an attention backend without context parallelism
            raise InvalidInputError(f"context parallelism over {_STATE.world} processes: {err}") from None
    if degrees.cfg > 1:  # outermost: it sees the pipeline's own call arguments
        from storymem_cli.models.parallel_cfg import enable_cfg_parallel

        enable_cfg_parallel(transformer, mesh)
    _STATE.used = degrees
