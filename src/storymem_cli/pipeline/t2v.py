"""The first shot by text-to-video (SPEC 4, 6): diffusers' ``WanPipeline`` with Wan2.2 T2V A14B,
sharing the tokenizer, text encoder and VAE with the M2V pipeline (only the transformers differ)."""

from __future__ import annotations

from typing import Any

from diffusers import WanPipeline

from storymem_cli.config import SamplingConfig
from storymem_cli.pipeline.scheduler import make_scheduler


def make_t2v_pipeline(
    shared: dict[str, Any], transformer: Any, transformer_2: Any, scheduler_config: Any, sampling: SamplingConfig
) -> WanPipeline:
    """``shared``: tokenizer, text_encoder, vae (already loaded for M2V)."""
    return WanPipeline(
        tokenizer=shared["tokenizer"],
        text_encoder=shared["text_encoder"],
        vae=shared["vae"],
        scheduler=make_scheduler(scheduler_config, sampling.flow_shift, sampling.release_sigmas),
        transformer=transformer,
        transformer_2=transformer_2,
        boundary_ratio=sampling.boundary_ratio,
    )
