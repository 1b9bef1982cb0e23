"""The release's noise schedule and the Wan2.2 expert switch (SPEC 4), as pure functions.

diffusers' UniPC (``use_flow_sigmas=True``) spaces sigmas as ``linspace(1, 1/1000, N+1)[:-1]``;
the release spaces them as ``linspace(1 - 1/1000, 0, N+1)[:-1]``. Both then apply the same flow
shift ``s * x / (1 + (s - 1) * x)``. Passing :func:`release_base_sigmas` to
``scheduler.set_timesteps(sigmas=...)`` therefore reproduces the release's shifted schedule.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

NUM_TRAIN_TIMESTEPS = 1000  # Wan's flow-matching training horizon; timesteps are sigma * 1000

Expert = Literal["high", "low"]


def release_base_sigmas(steps: int, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> np.ndarray:
    """Unshifted sigmas of the release: what UniPC's ``set_timesteps(sigmas=...)`` expects."""
    if steps < 1:
        raise ValueError(f"`steps` must be >= 1, got {steps}")
    return np.linspace(1.0 - 1.0 / num_train_timesteps, 0.0, steps + 1)[:-1]


def diffusers_base_sigmas(steps: int, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> np.ndarray:
    """Unshifted sigmas of diffusers' UniPC default spacing (for ``release_sigmas=False``)."""
    if steps < 1:
        raise ValueError(f"`steps` must be >= 1, got {steps}")
    return np.linspace(1.0, 1.0 / num_train_timesteps, steps + 1)[:-1]


def euler_base_sigmas(steps: int) -> np.ndarray:
    """Unshifted sigmas of the Euler sampler step-distilled Wan LoRAs were trained for: from exactly 1."""
    if steps < 1:
        raise ValueError(f"`steps` must be >= 1, got {steps}")
    return np.linspace(1.0, 0.0, steps + 1)[:-1]


def base_sigmas(
    steps: int, release: bool, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS, scheduler: str = "unipc"
) -> np.ndarray:
    """Unshifted sigmas: Euler's, else the release's spacing, or diffusers' default."""
    if scheduler == "euler":
        return euler_base_sigmas(steps)
    spacing = release_base_sigmas if release else diffusers_base_sigmas
    return spacing(steps, num_train_timesteps)


def shift_sigmas(sigmas: np.ndarray, flow_shift: float) -> np.ndarray:
    """Flow-matching time shift, the same formula as diffusers and the release."""
    return flow_shift * sigmas / (1.0 + (flow_shift - 1.0) * sigmas)


def release_sigmas(steps: int, flow_shift: float, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> np.ndarray:
    """The shifted sigmas the release samples with, one per step (the final 0 not included)."""
    return shift_sigmas(release_base_sigmas(steps, num_train_timesteps), flow_shift)


def expert_for_timestep(
    timestep: float, boundary_ratio: float, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS
) -> Expert:
    """Which Wan2.2 expert denoises at ``timestep``: ``transformer`` (high) or ``transformer_2`` (low)."""
    return "high" if timestep >= boundary_ratio * num_train_timesteps else "low"
