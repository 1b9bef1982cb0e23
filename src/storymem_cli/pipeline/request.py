"""What the renderer asks the model for: one shot (the contract in docs/ARCHITECTURE.md).

Kept free of torch so the renderer and the CLI can build and validate requests cheaply.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from storymem_cli.config import (
    MOTION_FRAMES_MM2V,
    VAE_SPATIAL_STRIDE,
    VAE_TEMPORAL_STRIDE,
    RopeConfig,
    SchedulerName,
    ShotMode,
)

# Wan patchifies latents 2x2, so pixel sizes must be multiples of 8 * 2.
SIZE_MULTIPLE = VAE_SPATIAL_STRIDE * 2

FIRST_FRAMES_BY_MODE: dict[str, int] = {"t2v": 0, "m2v": 0, "mi2v": 1, "mm2v": MOTION_FRAMES_MM2V}


def _check_image(value: Any, where: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype != np.uint8 or value.ndim != 3 or value.shape[2] != 3:
        got = f"{type(value).__name__}" + (
            f" {value.dtype} {value.shape}" if isinstance(value, np.ndarray) else ""
        )
        raise ValueError(f"{where} must be an (H, W, 3) uint8 RGB image, got {got}")
    if value.shape[0] < 1 or value.shape[1] < 1:
        raise ValueError(f"{where} is empty: shape {value.shape}")
    return value


class ShotRequest(BaseModel):
    """One shot to generate: a prompt, the memory images and (MI2V/MM2V) the known first frames."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    mode: ShotMode
    prompt: str = Field(min_length=1)
    negative_prompt: str | None = None  # None: Wan's default negative prompt (SPEC 4)
    memory: list[np.ndarray] = Field(default_factory=list)  # (H, W, 3) uint8, any size: the pipeline resizes
    first_frames: list[np.ndarray] = Field(default_factory=list)  # mi2v: 1, mm2v: 5, else none
    width: int = Field(ge=SIZE_MULTIPLE)
    height: int = Field(ge=SIZE_MULTIPLE)
    frames: int = Field(ge=1)
    steps: int = Field(ge=1)
    seed: int = Field(ge=0)
    rope: RopeConfig = Field(default_factory=RopeConfig)
    # Sampling overrides; None takes the preset's t2v / m2v SamplingConfig.
    guidance_high: float | None = None
    guidance_low: float | None = None
    flow_shift: float | None = Field(default=None, gt=0)
    boundary_ratio: float | None = Field(default=None, gt=0, lt=1)
    scheduler: SchedulerName | None = None

    @field_validator("memory", "first_frames")
    @classmethod
    def _images(cls, images: list[Any], info) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
        return [_check_image(img, f"{info.field_name}[{i}]") for i, img in enumerate(images)]

    @field_validator("width", "height")
    @classmethod
    def _multiple(cls, value: int, info) -> int:  # type: ignore[no-untyped-def]
        if value % SIZE_MULTIPLE:
            raise ValueError(
                f"{info.field_name}={value} is not a multiple of {SIZE_MULTIPLE} "
                f"(try {value // SIZE_MULTIPLE * SIZE_MULTIPLE})"
            )
        return value

    @field_validator("frames")
    @classmethod
    def _four_k_plus_one(cls, value: int) -> int:
        if value % VAE_TEMPORAL_STRIDE != 1:
            nearest = value // VAE_TEMPORAL_STRIDE * VAE_TEMPORAL_STRIDE + 1
            raise ValueError(f"frames={value} must be 4k+1 for the Wan VAE (try {nearest})")
        return value

    @model_validator(mode="after")
    def _mode_consistency(self) -> ShotRequest:
        expected = FIRST_FRAMES_BY_MODE[self.mode]
        if len(self.first_frames) != expected:
            raise ValueError(
                f"mode {self.mode!r} needs {expected} first_frames, got {len(self.first_frames)}"
            )
        if self.mode == "t2v" and self.memory:
            raise ValueError(f"mode 't2v' takes no memory images, got {len(self.memory)}; use 'm2v'")
        if expected and self.frames <= expected:
            raise ValueError(f"frames={self.frames} must exceed the {expected} known first frames of {self.mode!r}")
        return self

    @property
    def known_frames(self) -> int:
        """Pixel frames of the shot given in advance (mask 1): 0, 1 (MI2V) or 5 (MM2V)."""
        return FIRST_FRAMES_BY_MODE[self.mode]
