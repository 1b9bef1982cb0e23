"""The method's numbers, in one place, with the reason for each default.

Everything the paper or the authors' release fixes lives here as a pydantic
default (see ../shared/SPEC.md, sections noted per field). Presets and CLI flags
override these objects; the resolved settings are saved with every run.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Wan's default negative prompt: the release uses it whenever none is given
# (diffusers defaults to ""), SPEC 4.
WAN_DEFAULT_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)

TEXT_ENCODER_MAX_TOKENS = 512  # UMT5-XXL context; longer prompts are truncated (SPEC 4)
VAE_TEMPORAL_STRIDE = 4  # Wan2.1 VAE: 4x8x8 compression (SPEC 4)
VAE_SPATIAL_STRIDE = 8
MOTION_FRAMES_MM2V = 5  # MM2V conditions on the previous shot's last 5 frames (SPEC 2, 6)

RopeMode = Literal["negative", "sequential"]
ContinuationMode = Literal["mi2v", "mm2v", "none"]
ShotMode = Literal["t2v", "m2v", "mi2v", "mm2v"]  # what the pipeline generates
# What a plan and run.json call a shot: a first shot generated from reference images is MR2V (SPEC 6),
# which the pipeline runs as M2V (the references are its memory).
PlanMode = Literal["t2v", "m2v", "mr2v", "mi2v", "mm2v"]
# unipc: the paper's and the release's sampler; euler: what step-distilled LoRAs such as Wan2.2
# Lightning were distilled for (4 steps at flow shift 5: sigmas 1, .938, .833, .625)
SchedulerName = Literal["unipc", "euler"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SamplingConfig(_Frozen):
    """Diffusion sampling for one kind of shot (SPEC 4)."""

    steps: int = Field(40, ge=1)  # paper and release: 40 UniPC steps
    guidance_high: float = 3.5  # CFG on the high-noise expert
    guidance_low: float = 3.5  # CFG on the low-noise expert
    flow_shift: float = 4.0  # I2V/M2V: 4.0; T2V first shot: 12.0
    boundary_ratio: float = Field(0.9, gt=0, lt=1)  # t >= ratio*1000 runs the high-noise expert; T2V: 0.875
    release_sigmas: bool = True  # linspace(1-1/1000, 0, N+1)[:-1], shifted: matches the release within 1e-6
    scheduler: SchedulerName = "unipc"  # euler spaces sigmas linspace(1, 0, N+1)[:-1] before the shift


M2V_SAMPLING = SamplingConfig()
T2V_SAMPLING = SamplingConfig(flow_shift=12.0, boundary_ratio=0.875)


class VideoConfig(_Frozen):
    """Shot geometry (SPEC 4). A14B defaults; the tiny preset overrides them."""

    width: int = Field(832, ge=16)  # 832x480 landscape (480x832 portrait also trained)
    height: int = Field(480, ge=16)
    frames: int = Field(81, ge=1)  # must be 4k+1 for the Wan VAE; 81 frames = 21 latent frames
    fps: int = Field(16, ge=1)  # Wan2.2 A14B generates 16 fps


class RopeConfig(_Frozen):
    """Temporal positions given to memory latents (SPEC 3)."""

    mode: RopeMode = "negative"  # paper: memory at -M*S..-S, shot at 0..T-1; "sequential" = release e027735
    shift: float = Field(5.0, gt=0, allow_inf_nan=False)  # S = 5 in the paper; S <= 0 or nan has no meaning


class MemoryConfig(_Frozen):
    """Keyframe selection and the memory bank (SPEC 7)."""

    capacity: int = Field(10, ge=1)  # README of the release: 10 (its code default is 8)
    sink_size: int = Field(3, ge=0)  # first 3 keyframes of the story are never evicted
    max_keyframes_per_shot: int = Field(3, ge=1)  # lower the threshold while more than 3 are chosen
    novelty_threshold: float = 0.9  # cosine to the latest keyframe below this -> new keyframe
    threshold_step: float = 0.01  # how much the threshold falls per rescan
    dedupe_threshold: float = 0.9  # drop a keyframe whose cosine to any bank entry is above this
    # "semantic": the novelty scan + dedupe above (paper) on the shot's own frames; "release": the
    # same on the untrimmed output, scan from frame 2, as the authors' release; "first-frame": each
    # shot's first usable frame, no scan, no dedupe (paper Table 2, "w/o semantic selection")
    selection: Literal["semantic", "release", "first-frame"] = "semantic"
    aesthetic: Literal["hpsv3", "laion", "none"] = "hpsv3"  # paper: HPSv3
    aesthetic_threshold: float | None = None  # None: the scorer's own default (HPSv3: 3.0)
    clip_model: str = "ViT-B-32-quickgelu"  # OpenAI CLIP ViT-B/32, as in the release
    clip_pretrained: str = "openai"
