"""The first shot by text-to-video (SPEC 4, 6): diffusers' ``WanPipeline`` with Wan2.2 T2V A14B,
sharing the tokenizer, text encoder and VAE with the M2V pipeline (only the transformers differ)."""

from __future__ import annotations

from typing import Any

from diffusers import WanPipeline

from storymem_cli.config import SamplingConfig
from storymem_cli.pipeline.scheduler import make_scheduler


class StoryMemT2VPipeline(WanPipeline):
    """diffusers' ``WanPipeline`` with guidance decided per expert, as the M2V pipeline does.

    The stock pipeline runs the unconditional pass for both experts whenever the high-noise
    expert's guidance is above 1, even where the low-noise expert's guidance is 1 (the pass is
    then computed and cancelled out), and never where only the low-noise expert's is. Its loop asks
    ``do_classifier_free_guidance`` once per step, after setting the step's timestep, so answering
    for the step's expert is enough.
    """

    @property
    def do_classifier_free_guidance(self) -> bool:
        t = self._current_timestep
        if t is None:  # before the loop (prompt encoding): is there guidance anywhere?
            return max(self._guidance_scale, self._guidance_scale_2 or 0.0) > 1
        boundary = self.config.boundary_ratio
        high_noise = boundary is None or t >= boundary * self.scheduler.config.num_train_timesteps
        return (self._guidance_scale if high_noise else self._guidance_scale_2) > 1


def make_t2v_pipeline(
    shared: dict[str, Any], transformer: Any, transformer_2: Any, scheduler_config: Any, sampling: SamplingConfig
) -> StoryMemT2VPipeline:
    """``shared``: tokenizer, text_encoder, vae (already loaded for M2V)."""
    return StoryMemT2VPipeline(
        tokenizer=shared["tokenizer"],
        text_encoder=shared["text_encoder"],
        vae=shared["vae"],
        scheduler=make_scheduler(scheduler_config, sampling.flow_shift, sampling.release_sigmas, sampling.scheduler),
        transformer=transformer,
        transformer_2=transformer_2,
        boundary_ratio=sampling.boundary_ratio,
    )
