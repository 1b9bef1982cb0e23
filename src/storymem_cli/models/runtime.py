"""How to run a model on this machine: device, precision, offloading, fast modes (torch-free)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from storymem_cli.config import ContinuationMode

OffloadMode = Literal["none", "model", "group"]
DtypeName = Literal["auto", "bfloat16", "float16", "float32"]
CacheMode = Literal["none", "first-block", "taylorseer", "magcache"]
QuantizeMode = Literal["none", "fp8"]
StyleExperts = Literal["both", "high", "low"]  # a style LoRA's experts (Wan2.2 LoRAs may ship one file per expert)
# a style LoRA's pair: t2v (the first shot's T2V experts), m2v (the memory shots' I2V experts) or both
# (Lightning ships different files for T2V-A14B and I2V-A14B)
StylePair = Literal["both", "t2v", "m2v"]


class RuntimeOptions(BaseModel):
    """How the model runs on this machine: device, precision, memory and the fast modes.

    One model from the command line (``RenderOptions.runtime``) through run.json
    (``settings.runtime``) to the loaded model: a new option is one field here and one flag of the
    same name in ``cli/render.py``, whose default, choices and bounds are read from the field. Its
    place in the shots' fingerprint is one entry in ``render/settings.py``: NOT_IN_FINGERPRINT, or
    ADDED_LATER with its default (else every finished shot of every earlier run would render again;
    tests/render/test_fingerprint_pinned.py fails first).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str | None = None  # None: "cuda" when available, else "cpu"
    dtype: DtypeName = "auto"  # transformers' dtype; auto: the preset's on an accelerator, float32 on CPU
    offload: OffloadMode = "none"  # model: one component on the device at a time; group: block by block
    vae_tiling: bool = False  # decode in tiles: less memory at large sizes
    attention_backend: str | None = None  # a diffusers backend name (e.g. "flash"), or "auto": the fastest that runs
    # Merge every LoRA into its expert's weights at load: a fused A14B expert forward measured 5.5% faster
    # on an H200 (5.84 s against 6.16 s at 48,360 tokens); peft can still unmerge it.
    fuse_lora: bool = True
    # Fast modes (models/speed.py), all off by default.
    cache: CacheMode = "none"  # step caching on both experts: first-block (residual threshold) or taylorseer
    # first-block: a step recomputes when the first block's residual changes more than this (diffusers' default)
    cache_threshold: float = Field(0.05, gt=0, le=1, description="the first-block cache's relative residual change")
    # taylorseer: full computation every N steps, extrapolated between (diffusers' default)
    cache_interval: int = Field(5, ge=2, le=40, description="steps between full computations")
    # magcache: skip steps by the Wan2.2 experts' magnitude-ratio curve (models/magcache.py); the MagCache
    # authors' settings for Wan2.2 A14B (threshold 0.06, K 2; retention 0.1 on I2V, 0.4 on T2V)
    magcache_threshold: float = Field(0.06, gt=0, le=1, description="MagCache's accumulated ratio error")
    magcache_k: int = Field(2, ge=1, le=40, description="most steps MagCache skips in a row")
    magcache_retention: float | None = Field(
        None, ge=0, lt=1, description="the fraction of each expert's first steps never skipped"
    )  # None: the curve's (the authors')
    # auto: the authors' choice (T2V: both experts; I2V, i.e. the memory shots: the low-noise expert only)
    magcache_experts: Literal["auto", "low", "both"] = "auto"
    magcache_curve: Path | None = None  # a calibration file (--magcache-calibrate); None: the published curves
    magcache_calibrate: Path | None = None  # record the ratios of this render into this file (skips nothing)
    compile: bool = False  # torch.compile of the repeated transformer blocks (dynamic shapes)
    quantize: QuantizeMode = "none"  # fp8: half the experts' memory (speed.fp8_method: torchao matmuls or storage)


class ModelOptions(RuntimeOptions):
    """What ``StoryModel.load`` takes besides the preset: how to run it, and which LoRAs to load."""

    continuation: ContinuationMode = "mi2v"  # picks the StoryMem LoRA variant (none: the MI2V one, M2V only)
    lora: Path | None = None  # StoryMem LoRA folder or repo snapshot; None: the preset's source
    # style LoRAs as (path, strength, experts, pair); a shorter tuple means both experts / both pairs
    style_loras: list[tuple[Path, float, StyleExperts, StylePair]] = Field(default_factory=list)

    @field_validator("style_loras", mode="before")
    @classmethod
    def _both_by_default(cls, value: Any) -> Any:
        return [(*style, *("both", "both")[len(style) - 2 :]) for style in value]

    @classmethod
    def of(cls, runtime: RuntimeOptions | None) -> ModelOptions:
        """``runtime`` as it is when it names LoRAs already; else with the preset's LoRAs."""
        if isinstance(runtime, ModelOptions):
            return runtime
        return cls(**(runtime or RuntimeOptions()).model_dump())


def default_device() -> str:
    """The device when none is chosen: ``cuda`` when torch sees a CUDA GPU, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def auto_dtype(preset_dtype: str, device: str) -> str:
    """What ``dtype="auto"`` means on ``device``: the preset's precision on an accelerator, float32 on
    the CPU."""
    return "float32" if device.split(":")[0] == "cpu" else preset_dtype
