"""UniPC with the release's sigma spacing by default (SPEC 4), so stock diffusers pipelines
(``WanPipeline`` for the T2V first shot) sample on the same schedule as the M2V pipeline; or flow-matching
Euler, for step-distilled LoRAs (``--scheduler euler``)."""

from __future__ import annotations

from typing import Any

from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

from storymem_cli.pipeline.sigmas import euler_base_sigmas, release_base_sigmas


class ReleaseUniPCScheduler(UniPCMultistepScheduler):
    """``set_timesteps(n)`` samples ``linspace(1 - 1/1000, 0, n + 1)[:-1]`` before the flow shift,
    instead of diffusers' ``linspace(1, 1/1000, n + 1)[:-1]``; explicit ``sigmas`` still win."""

    def set_timesteps(self, num_inference_steps: int | None = None, device: Any = None, sigmas: Any = None, mu: Any = None):  # type: ignore[override]
        if sigmas is None and num_inference_steps is not None:
            sigmas = release_base_sigmas(num_inference_steps, self.config.num_train_timesteps)
        return super().set_timesteps(num_inference_steps, device=device, sigmas=sigmas, mu=mu)


class EulerFlowScheduler(FlowMatchEulerDiscreteScheduler):
    """``set_timesteps(n)`` samples ``linspace(1, 0, n + 1)[:-1]`` before the shift (diffusers' own
    default stops at 1/1000 and spaces n points, not n + 1); explicit ``sigmas`` still win."""

    def set_timesteps(self, num_inference_steps: int | None = None, device: Any = None, sigmas: Any = None, **kwargs: Any):  # type: ignore[override]
        if sigmas is None and num_inference_steps is not None:
            sigmas = euler_base_sigmas(num_inference_steps)
        return super().set_timesteps(num_inference_steps, device=device, sigmas=sigmas, **kwargs)


def make_scheduler(
    base_config: Any, flow_shift: float, release_sigmas: bool = True, scheduler: str = "unipc"
) -> UniPCMultistepScheduler | FlowMatchEulerDiscreteScheduler:
    """A flow-matching UniPC from a repo's scheduler config, with ``flow_shift`` set; the release's
    spacing by default, diffusers' own with ``release_sigmas=False``. ``scheduler="euler"``: first-order
    Euler at ``flow_shift`` (the training horizon from the repo's config)."""
    if scheduler == "euler":
        return EulerFlowScheduler(num_train_timesteps=base_config.get("num_train_timesteps", 1000), shift=flow_shift)
    cls = ReleaseUniPCScheduler if release_sigmas else UniPCMultistepScheduler
    return cls.from_config(
        base_config, flow_shift=flow_shift, use_flow_sigmas=True, prediction_type="flow_prediction"
    )
