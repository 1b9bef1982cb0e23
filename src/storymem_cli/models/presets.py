"""Named model presets: which weights, and the defaults that go with them (SPEC 4).

Torch-free, so ``--help`` and ``validate`` can list presets cheaply. A preset is resolved to weights
by :mod:`storymem_cli.models.registry`.
"""

from __future__ import annotations

from os import PathLike
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from storymem_cli.config import M2V_SAMPLING, T2V_SAMPLING, SamplingConfig, VideoConfig
from storymem_cli.models.lora_files import STORYMEM_HUB_REPO as STORYMEM_LORA_REPO  # SPEC 5
from storymem_cli.models.lora_files import STORYMEM_VARIANT_DIRS as LORA_VARIANT_DIRS  # M2V+MI2V, M2V+MM2V

WAN_I2V_REPO = "Wan-AI/Wan2.2-I2V-A14B-Diffusers"  # M2V / MI2V / MM2V shots (SPEC 4)
WAN_T2V_REPO = "Wan-AI/Wan2.2-T2V-A14B-Diffusers"  # the first shot (SPEC 4)

TorchDtypeName = Literal["bfloat16", "float16", "float32"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemoryDefaults(_Frozen):
    """Which frame embedder and aesthetic scorer the memory bank uses with this model."""

    embedder: str  # "clip-vit-b-32" (the release's CLIP), "pixels" (toy world) or "tiny" (random, for tests)
    aesthetic: Literal["hpsv3", "laion", "none"]


class ModelPreset(_Frozen):
    """A model to render with: sources of the weights plus the defaults that suit it."""

    name: str
    description: str  # one line a user reads in --help / `storymem models`
    video: VideoConfig
    steps: int = Field(ge=1)
    memory: MemoryDefaults
    t2v: SamplingConfig
    m2v: SamplingConfig
    i2v_source: str  # hub repo id or local folder of a diffusers Wan2.2 I2V repo
    t2v_source: str  # hub repo id or local folder of a diffusers Wan2.2 T2V repo
    lora_source: str | None  # hub repo id or folder holding the StoryMem LoRA variants; None: no LoRA
    transformer_dtype: TorchDtypeName  # on an accelerator; CPU runs use float32
    text_encoder_dtype: TorchDtypeName
    builtin: bool = False  # True: materialised by storymem into its cache (tiny: random weights; toy: packaged)

    def lora_for(self, lora: str | PathLike[str] | None) -> str | None:
        """The StoryMem LoRA a render loads: the user's ``--lora`` when given, else the preset's own."""
        return str(lora) if lora is not None else self.lora_source


A14B = ModelPreset(
    name="wan2.2-a14b",
    description="Wan2.2 A14B (I2V for memory shots, T2V for the first) + StoryMem LoRA; needs a large GPU",
    video=VideoConfig(),
    steps=M2V_SAMPLING.steps,
    memory=MemoryDefaults(embedder="clip-vit-b-32", aesthetic="hpsv3"),
    t2v=T2V_SAMPLING,
    m2v=M2V_SAMPLING,
    i2v_source=WAN_I2V_REPO,
    t2v_source=WAN_T2V_REPO,
    lora_source=STORYMEM_LORA_REPO,
    transformer_dtype="bfloat16",  # loaded in bf16: ~28.6 GB per expert in memory (the hub files are fp32, ~57 GB each)
    text_encoder_dtype="bfloat16",
)

TINY_STEPS = 4  # two steps per expert at boundary 0.9 / 0.875: both experts run
TINY = ModelPreset(
    name="tiny",
    description="random weights built in code, for tests and CPU smoke runs (the video is noise)",
    video=VideoConfig(width=64, height=48, frames=9, fps=8),  # 3 latent frames of 4x3 tokens
    steps=TINY_STEPS,
    memory=MemoryDefaults(embedder="tiny", aesthetic="none"),
    t2v=T2V_SAMPLING.model_copy(update={"steps": TINY_STEPS}),
    m2v=M2V_SAMPLING.model_copy(update={"steps": TINY_STEPS}),
    i2v_source="i2v",  # folders inside the built model directory
    t2v_source="t2v",
    lora_source=None,
    transformer_dtype="float32",
    text_encoder_dtype="float32",
    builtin=True,
)

TOY_STEPS = 20  # a trained flow model: fewer steps blur the sprites; 20 still renders a story in seconds
TOY = ModelPreset(
    name="toy",
    description="toy-world model trained from scratch on 2 CPU cores (32x32 sprites); memory keeps the colour, shapes are blobs",
    video=VideoConfig(width=32, height=32, frames=17, fps=16),  # toy-world clips rendered at 32x32 (docs/training.md)
    steps=TOY_STEPS,
    memory=MemoryDefaults(embedder="pixels", aesthetic="none"),  # no CLIP knows the toy world; no aesthetics
    t2v=T2V_SAMPLING.model_copy(update={"steps": TOY_STEPS}),
    m2v=M2V_SAMPLING.model_copy(update={"steps": TOY_STEPS}),
    i2v_source="i2v",  # folders inside the materialised model directory (models/toy.py)
    t2v_source="t2v",
    lora_source=None,  # trained from scratch with memory conditioning built in
    transformer_dtype="float32",
    text_encoder_dtype="float32",
    builtin=True,
)

PRESETS: dict[str, ModelPreset] = {p.name: p for p in (A14B, TINY, TOY)}
