"""Resolved render settings: the preset's defaults with the user's flags on top.

What is saved in run.json and what decides whether a finished shot can be kept
on a re-run: every setting that changes pixels is in the fingerprint; how the
work is scheduled and on which hardware (device, offload, attention backend,
VAE tiling) is not: resuming on another machine, or with less GPU memory,
keeps the finished shots. A dtype that equals what ``auto`` picks on this
machine is recorded as ``auto``, so naming it changes nothing.

How the model runs (device, precision, the fast modes) is one nested model,
``models.runtime.RuntimeOptions``, taken from the options as it is; the
fingerprint hashes it in run.json format 1's flat layout, so finished shots of
earlier runs keep matching.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from storymem_cli.config import (
    ContinuationMode,
    MemoryConfig,
    RopeConfig,
    RopeMode,
    SchedulerName,
    VideoConfig,
)
from storymem_cli.models.runtime import RuntimeOptions, StyleExperts, StylePair
from storymem_cli.render.seeds import DEFAULT_BASE_SEED

# Scheduling and hardware: the frames are the same up to floating-point noise. VAE tiling decodes
# in overlapping tiles blended at the seams: a numerical choice made to fit a GPU, not a creative one.
# Names of settings and of RuntimeOptions fields alike (the fingerprint hashes both in one flat layer).
# --magcache-calibrate only records: the frames are those of the same render without it.
NOT_IN_FINGERPRINT = {"offload", "device", "attention_backend", "vae_tiling", "compile", "magcache_calibrate"}
# --memory-from's folder: where the earlier run lies, not what it holds (its identity is in every
# shot's fingerprint, render/series.py), so moving it keeps the finished shots.
NOT_IN_FINGERPRINT |= {"memory_from"}
# Settings that left the fingerprint later: hashed with the value every earlier run had (the
# default), whatever it is now, so the finished shots of runs rendered before keep matching.
LEFT_LATER: dict[str, Any] = {"vae_tiling": False}
# Settings added after runs were already being rendered: left out of the fingerprint while at
# their default, so a run rendered before they existed keeps its finished shots.
ADDED_LATER: dict[tuple[str, ...], Any] = {
    ("upscale",): 1, ("memory", "selection"): "semantic", ("guidance",): None, ("guidance_2",): None,
    ("cache",): "none", ("cache_threshold",): 0.05, ("cache_interval",): 5, ("quantize",): "none",
    ("fuse_lora",): True, ("style_loras", "*", "expert"): "both", ("style_loras", "*", "pair"): "both",
    ("scheduler",): "unipc", ("flow_shift_t2v",): None, ("flow_shift_m2v",): None,
    ("retrieval",): None, ("describe_characters",): False,
    ("magcache_threshold",): 0.06, ("magcache_k",): 2, ("magcache_retention",): None, ("magcache_curve",): None,
    ("magcache_experts",): "auto",
}  # fmt: skip  # "*": every item of a list
# A step cache whose implementation changed the frames it makes: its runs' shots carry the revision, so
# shots rendered by the earlier implementation are rendered again on resume (revision 2, issue 30: first-block
# measures shot tokens only, taylorseer runs in lite mode).
CACHE_REVISION = {"first-block": 2, "taylorseer": 2}
MAX_GUIDANCE = 30.0  # far above any useful value (the paper uses 3.5); a typo such as 35 is refused
GUIDANCE = "1 turns guidance off; the paper uses 3.5"  # what a guidance value means, for the range error
MAX_FLOW_SHIFT = 100.0  # shift 100 puts every step above sigma 0.99 already; beyond is a typo
MAX_UPSCALE = 16  # 64x64 toy clips become 1024x1024; beyond that only the files grow


class StyleLora(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    strength: float = 1.0  # diffusers' default adapter weight
    # Wan2.2 LoRAs that ship one file per expert (Lightning's high_noise_model / low_noise_model)
    expert: StyleExperts = "both"
    # Lightning ships different files for the T2V experts (first shot) and the I2V experts (memory shots)
    pair: StylePair = "both"


class RenderOptions(BaseModel):
    """What the user asked for; ``None`` means "the preset's default"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = "auto"
    width: int | None = Field(None, ge=16)
    height: int | None = Field(None, ge=16)
    frames: int | None = Field(None, ge=1)
    steps: int | None = Field(None, ge=1)
    seed: int | None = Field(None, ge=0)
    guidance: float | None = Field(None, ge=1, le=MAX_GUIDANCE, description=GUIDANCE)  # both; None: the preset's
    guidance_2: float | None = Field(None, ge=1, le=MAX_GUIDANCE, description=GUIDANCE)  # low-noise; None: as guidance
    scheduler: SchedulerName = "unipc"  # the paper's; euler for step-distilled LoRAs
    flow_shift_t2v: float | None = Field(None, gt=0, le=MAX_FLOW_SHIFT, allow_inf_nan=False)  # None: the preset's
    flow_shift_m2v: float | None = Field(None, gt=0, le=MAX_FLOW_SHIFT, allow_inf_nan=False)  # None: the preset's
    continuation: ContinuationMode = "mi2v"  # the paper's setting for its results (SPEC 6)
    rope: RopeMode | None = None
    rope_shift: float | None = None
    memory_size: int | None = Field(None, ge=1)
    sink_size: int | None = Field(None, ge=0)
    keyframes_per_shot: int | None = Field(None, ge=1)
    keyframes: Literal["semantic", "release", "first-frame"] | None = None  # MemoryConfig.selection
    aesthetic: Literal["hpsv3", "laion", "none"] | None = None
    use_memory: bool = True
    lora: str | None = None
    style_loras: tuple[StyleLora, ...] = ()
    runtime: RuntimeOptions = RuntimeOptions()  # device, precision, fast modes: the settings take it as it is
    upscale: int = Field(1, ge=1, le=MAX_UPSCALE)
    # Characters (docs/memory.md): None picks "characters" for a script that declares characters.
    retrieval: Literal["characters", "paper"] | None = None
    describe_characters: bool = False  # append each named character's description to the prompt
    memory_from: str | None = None  # an earlier run folder whose memory starts this story's (series)


class RenderSettings(BaseModel):
    """Everything a render depends on, resolved (no ``None`` left)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str  # preset name or local model folder
    video: VideoConfig
    steps: int = Field(ge=1)
    seed: int = Field(ge=0)
    # Guidance overrides: None keeps the preset's per-expert values; 1 skips the unconditional pass.
    guidance: float | None = Field(None, ge=1, le=MAX_GUIDANCE)
    guidance_2: float | None = Field(None, ge=1, le=MAX_GUIDANCE)
    # The sampler and the flow shift of the first shot's T2V pair and of the memory shots' M2V pair;
    # None: the preset's (paper: UniPC, shift 12 for T2V and 4 for M2V).
    scheduler: SchedulerName = "unipc"
    flow_shift_t2v: float | None = Field(None, gt=0, le=MAX_FLOW_SHIFT, allow_inf_nan=False)
    flow_shift_m2v: float | None = Field(None, gt=0, le=MAX_FLOW_SHIFT, allow_inf_nan=False)
    continuation: ContinuationMode
    rope: RopeConfig
    memory: MemoryConfig
    embedder: str  # frame embedder (memory.embed.EMBEDDERS): the preset's choice
    use_memory: bool
    lora: str | None
    style_loras: tuple[StyleLora, ...]
    # How the model runs. In the fingerprint: dtype, the step cache and fp8 storage (they change pixels),
    # fuse_lora when off; not: device, offload, attention backend, VAE tiling (seams only), compilation.
    runtime: RuntimeOptions
    # Shot clips and story.mp4 are written this many times larger (nearest neighbour); memory,
    # tail frames and everything the embedder and scorer see stay at the model's size.
    upscale: int = Field(1, ge=1, le=MAX_UPSCALE)
    # How a shot's memory is chosen: "paper" (every active entry) or "characters" (who the shot names
    # first, memory/retrieve.py) for a script with characters; None for one without (the paper's memory).
    retrieval: Literal["characters", "paper"] | None = None
    describe_characters: bool = False
    memory_from: str | None = None

    def guidance_per_expert(self) -> tuple[float | None, float | None]:
        """(high-noise, low-noise) guidance overrides for each shot; None: the preset's."""
        return self.guidance, self.guidance_2 if self.guidance_2 is not None else self.guidance

    def flow_shift_for(self, mode: str) -> float | None:
        """The flow shift override of a shot's pair (t2v: the T2V experts; any other mode: M2V)."""
        return self.flow_shift_t2v if mode == "t2v" else self.flow_shift_m2v

    def fingerprint(self) -> str:
        """Hash of every setting that changes the frames or the files written."""
        payload = self.model_dump(mode="json")
        payload.update(payload.pop("runtime"))  # format 1's flat layout, which every finished shot was hashed in
        payload = {**{key: value for key, value in payload.items() if key not in NOT_IN_FINGERPRINT}, **LEFT_LATER}
        for path, default in ADDED_LATER.items():
            _drop_default(payload, path, default)
        if payload.get("cache") in CACHE_REVISION:
            payload["cache_revision"] = CACHE_REVISION[payload["cache"]]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _drop_default(holder: Any, path: tuple[str, ...], default: Any) -> None:
    """Delete the key at ``path`` under ``holder`` where it holds ``default`` ("*": every list item)."""
    first, *rest = path
    if not rest:
        if holder.get(first) == default:
            del holder[first]
        return
    for child in holder if first == "*" else [holder[first]]:
        _drop_default(child, tuple(rest), default)


_Config = TypeVar("_Config", bound=BaseModel)

# Options resolved against the preset in resolve_settings; every other option is a setting as it is,
# so a new option reaches run.json and the fingerprint without a line here (or fails loudly, since
# RenderSettings forbids fields it does not know).
RESOLVED_OPTIONS = frozenset(
    {"model", "width", "height", "frames", "steps", "seed", "rope", "rope_shift", "memory_size", "sink_size",
     "keyframes_per_shot", "keyframes", "aesthetic"}
)


def _override(config: _Config, changes: dict[str, Any]) -> _Config:
    return type(config).model_validate({**config.model_dump(), **changes})


def resolve_settings(
    options: RenderOptions,
    *,
    model_name: str,
    video: VideoConfig,
    steps: int,
    memory: MemoryConfig,
    embedder: str,
    rope: RopeConfig | None = None,
    auto_dtype: str | None = None,
) -> RenderSettings:
    """The preset's defaults (``video``, ``steps``, ``memory``, ``embedder``) overridden by the user's
    options. ``auto_dtype``: the precision ``--dtype auto`` picks on this machine; an explicit dtype
    equal to it is ``auto``, so that naming it does not invalidate the finished shots."""
    rope = rope or RopeConfig()
    video_over: dict[str, Any] = {
        key: value
        for key, value in {"width": options.width, "height": options.height, "frames": options.frames}.items()
        if value is not None
    }
    memory_over: dict[str, Any] = {
        key: value
        for key, value in {
            "capacity": options.memory_size,
            "sink_size": options.sink_size,
            "max_keyframes_per_shot": options.keyframes_per_shot,
            "selection": options.keyframes,
            "aesthetic": options.aesthetic,
        }.items()
        if value is not None
    }
    rope_over: dict[str, Any] = {
        key: value for key, value in {"mode": options.rope, "shift": options.rope_shift}.items() if value is not None
    }
    as_given = {name: getattr(options, name) for name in type(options).model_fields if name not in RESOLVED_OPTIONS}
    if options.runtime.dtype == auto_dtype:
        as_given["runtime"] = _override(options.runtime, {"dtype": "auto"})
    # model_validate, not model_copy(update=...): the overrides must pass the config's own checks.
    return RenderSettings(
        **as_given,
        model=model_name,
        video=_override(video, video_over),
        steps=options.steps if options.steps is not None else steps,
        seed=options.seed if options.seed is not None else DEFAULT_BASE_SEED,
        rope=_override(rope, rope_over),
        memory=_override(memory, memory_over),
        embedder=embedder,
    )
