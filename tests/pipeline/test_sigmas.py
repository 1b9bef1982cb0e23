"""SPEC 4: the release's sigma schedule through UniPC, and the expert switch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import UniPCMultistepScheduler

from storymem_cli.config import M2V_SAMPLING, T2V_SAMPLING
from storymem_cli.pipeline.scheduler import make_scheduler
from storymem_cli.pipeline.sigmas import (
    expert_for_timestep,
    release_base_sigmas,
    release_sigmas,
)


def spec_sigmas(steps: int, shift: float) -> np.ndarray:
    """SPEC 4 written out: linspace(1 - 1/1000, 0, N + 1)[:-1], then the flow shift."""
    base = np.array([(1 - 1 / 1000) * (1 - i / steps) for i in range(steps)])
    return shift * base / (1 + (shift - 1) * base)


@pytest.mark.parametrize("sampling", [M2V_SAMPLING, T2V_SAMPLING])
def test_scheduler_sigmas_match_the_release(sampling):
    expected = spec_sigmas(40, sampling.flow_shift)
    np.testing.assert_allclose(release_sigmas(40, sampling.flow_shift), expected, atol=1e-12)
    scheduler = make_scheduler(UniPCMultistepScheduler().config, sampling.flow_shift)
    scheduler.set_timesteps(sigmas=release_base_sigmas(40))
    np.testing.assert_allclose(scheduler.sigmas[:-1].numpy(), expected, atol=1e-6)
    assert scheduler.sigmas[-1].item() == 0.0
    # UniPC (like the release's scheduler) truncates timesteps to integers.
    np.testing.assert_array_equal(scheduler.timesteps.numpy(), np.floor(expected * 1000))
    # The stock WanPipeline calls set_timesteps(steps): our scheduler gives the same schedule.
    scheduler.set_timesteps(40)
    np.testing.assert_allclose(scheduler.sigmas[:-1].numpy(), expected, atol=1e-6)


def test_diffusers_default_spacing_differs():
    """Why the schedule is passed explicitly: diffusers' own spacing drifts from the release."""
    scheduler = make_scheduler(UniPCMultistepScheduler().config, 4.0, release_sigmas=False)
    scheduler.set_timesteps(40)
    assert np.abs(scheduler.sigmas[:-1].numpy() - spec_sigmas(40, 4.0)).max() > 1e-3


def test_expert_for_timestep():
    assert expert_for_timestep(900.0, 0.9) == "high"
    assert expert_for_timestep(899.99, 0.9) == "low"
    assert expert_for_timestep(875.0, 0.875) == "high"


def test_high_noise_expert_runs_exactly_the_steps_at_or_above_the_boundary(m2v_pipe, images):
    seen: dict[str, list[float]] = {"high": [], "low": []}

    def recorder(name):
        def hook(_module, _args, kwargs):
            seen[name].append(float(kwargs["timestep"][0]))

        return hook

    handles = [
        m2v_pipe.transformer.register_forward_pre_hook(recorder("high"), with_kwargs=True),
        m2v_pipe.transformer_2.register_forward_pre_hook(recorder("low"), with_kwargs=True),
    ]
    try:
        m2v_pipe(
            prompt="a test",
            memory_images=images(1),
            height=48,
            width=64,
            num_frames=5,
            num_inference_steps=40,
            boundary_ratio=0.9,
            guidance_scale=3.5,
            generator=torch.Generator().manual_seed(0),
            output_type="latent",
        )
    finally:
        for handle in handles:
            handle.remove()
    timesteps = np.floor(release_sigmas(40, m2v_pipe.scheduler.config.flow_shift) * 1000)
    high_steps = sorted({t for t in seen["high"]}, reverse=True)
    low_steps = sorted({t for t in seen["low"]}, reverse=True)
    np.testing.assert_array_equal(high_steps, timesteps[timesteps >= 900])
    np.testing.assert_array_equal(low_steps, timesteps[timesteps < 900])
    assert len(seen["high"]) == 2 * int((timesteps >= 900).sum())  # cond + uncond per step
    assert len(seen["high"]) + len(seen["low"]) == 2 * 40
    assert 0 < len(high_steps) < 40
