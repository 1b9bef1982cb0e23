"""What a training run is: one pydantic model, saved as ``OUT/train.json`` and compared on resume.

Defaults follow the paper (3.3) and the release where they say something (memory 1-10 frames, MI2V with
probability 0.5, negative RoPE with S = 5, rsLoRA r = alpha = 128, dropout 0.05); the rest carry their
reason. Torch-free: the CLI builds and validates this before importing anything heavy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from storymem_cli.config import RopeConfig

TrainMode = Literal["lora", "scratch"]
Stage = Literal["transformer", "vae"]
Experts = Literal["both", "high", "low"]
TimestepSampling = Literal["uniform", "shifted"]
LrSchedule = Literal["constant", "cosine"]
DtypeName = Literal["auto", "bfloat16", "float16", "float32"]

# Fields that may change between the stages of one run: how long, where, how often to log/save.
RESUMABLE_FIELDS = frozenset(
    {"output", "max_steps", "time_limit_minutes", "device", "log_every", "checkpoint_every", "keep_checkpoints",
     "latent_cache_mb"}
)


class TrainConfig(BaseModel):
    """Everything a training run depends on (see docs/training.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # --lr inf trains nothing

    dataset: Path  # a folder with index.json (toy/dataset.py format)
    output: Path  # run folder: train.json, checkpoints/, the exported LoRA or model
    mode: TrainMode = "lora"  # lora: adapt an existing model (the paper); scratch: a small model from random init
    model: str = "tiny"  # lora: preset name or model folder to adapt; scratch: a model size (train/scratch.py)

    # -- samples (paper 3.3) ---------------------------------------------------------------------------
    width: int | None = Field(None, ge=16)  # None: the model's own video size
    height: int | None = Field(None, ge=16)
    frames: int | None = Field(None, ge=1)  # None: the model's; a random window of this many frames per clip
    memory_min: int = Field(1, ge=1)  # paper: 1-10 memory frames per sample, count drawn uniformly
    memory_max: int = Field(10, ge=1)  # = the memory bank's capacity at inference
    memory_frame_stride: int = Field(1, ge=1)  # memory frames come from every k-th frame: k x fewer VAE encodes
    no_memory_share: float = Field(0.1, ge=0, le=1)  # samples with an empty memory: the bank is empty at shot 1
    first_frame_prob: float = Field(0.5, ge=0, le=1)  # paper: MI2V (or MM2V) conditioning half the time
    continuation: Literal["mi2v", "mm2v"] = "mi2v"  # known first frames when conditioned: 1 (MI2V) or 5 (MM2V)
    caption_dropout: float = Field(0.1, ge=0, lt=1)  # share trained on the negative prompt: CFG's other branch
    rope: RopeConfig = Field(default_factory=RopeConfig)  # paper: memory at -M*S..-S, S = 5 (SPEC 3)

    # -- what is trained -------------------------------------------------------------------------------
    experts: Experts = "both"  # lora: high-noise expert on t >= boundary, low-noise below; "high"/"low": one only
    lora_rank: int = Field(128, ge=1)  # release: r = 128
    lora_alpha: float = Field(128.0, gt=0)  # release: alpha = 128 with rsLoRA (scale alpha / sqrt(r))
    lora_dropout: float = Field(0.05, ge=0, lt=1)  # release: 0.05
    # scratch: share of batches that train the T2V (first-shot) model; 1 with init: a first-shot stage alone
    t2v_share: float = Field(0.2, ge=0, le=1)
    train_text_encoder: bool = False  # scratch: also train the text encoder (lora: always frozen)
    vae: str | None = None  # scratch: model folder whose VAE is used (frozen); None: random init (tests only)
    init: str | None = None  # scratch transformer stage: start from this model folder (OUT/model of an earlier run)
    # with init: the memory model starts as init's first-shot model, its input layer widened with zeros for the mask
    # and condition channels (Wan's I2V extends its T2V the same way): it draws from its first step
    m2v_from_t2v: bool = False
    stage: Stage = "transformer"  # scratch: "vae" first trains the autoencoder alone (reconstruction + KL)
    vae_kl_weight: float = Field(1e-4, ge=0)  # on the per-element KL: keeps latents Gaussian, recon dominates
    vae_decoder_only: bool = False  # stage vae on --vae: the latent space stays, so a transformer trained on it still fits
    vae_inflate: bool = False  # stage vae on a --frames 1 VAE: start its temporal layers as per-frame copies
    vae_chroma_weight: float = Field(0.0, ge=0)  # extra L1 weight on saturated pixels (toy sprites: 10-20% of a frame)

    # -- the loss --------------------------------------------------------------------------------------
    timestep_sampling: TimestepSampling = "shifted"  # sigma = shift(u): trains where the sampler spends its steps
    timestep_shift: float | None = Field(None, gt=0)  # None: the model's M2V flow shift (4.0 for Wan2.2 I2V)
    loss_chroma_weight: float = Field(0.0, ge=0)  # 0: the paper's plain loss; >0 weighs latents over saturated pixels

    # -- optimisation ----------------------------------------------------------------------------------
    max_steps: int = Field(1000, ge=1)  # optimiser steps in total, across resumed stages
    time_limit_minutes: float | None = Field(None, gt=0)  # stop cleanly (checkpoint) after this long
    batch_size: int = Field(1, ge=1)  # samples per micro-batch; a batch shares its memory count and mode
    grad_accum: int = Field(1, ge=1)  # micro-batches per optimiser step
    lr: float | None = Field(None, gt=0)  # None: 1e-4 for LoRA (usual for Wan LoRAs), 3e-4 from scratch
    lr_schedule: LrSchedule = "constant"  # cosine decays to lr_min over schedule_steps
    schedule_steps: int | None = Field(None, ge=1)  # cosine length, required for cosine: fixed across stages
    lr_min: float = Field(0.0, ge=0)
    warmup_steps: int = Field(50, ge=0)  # linear warm-up: Adam's moments are poor for the first steps
    weight_decay: float = Field(0.01, ge=0)  # AdamW's usual default
    grad_clip: float | None = Field(1.0, gt=0)  # global norm; spikes at high noise otherwise
    seed: int = Field(0, ge=0)  # model init (scratch), sample order, noise: one run = one seed

    # -- machine ---------------------------------------------------------------------------------------
    device: str | None = None  # None: cuda when present, else cpu
    dtype: DtypeName = "auto"  # frozen weights' dtype; auto: the model's on CUDA, float32 on CPU
    latent_cache_mb: int = Field(1024, ge=0)  # VAE latents kept in memory (frozen VAE): the CPU's bottleneck
    gradient_checkpointing: bool = False  # recompute block activations: needed for A14B at 81 frames
    checkpoint_every: int = Field(200, ge=1)  # optimiser steps between checkpoints
    keep_checkpoints: int = Field(2, ge=1)  # older checkpoints are deleted once a newer one is complete
    log_every: int = Field(10, ge=1)  # plain-text progress lines (not on a terminal)

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.memory_min > self.memory_max:
            raise ValueError(f"memory_min ({self.memory_min}) must not exceed memory_max ({self.memory_max})")
        if self.frames is not None and self.frames % 4 != 1:
            raise ValueError(f"frames={self.frames} must be 4k+1 for the Wan VAE")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and value % 16:
                raise ValueError(f"{name}={value} must be a multiple of 16")
        if self.lr_schedule == "cosine" and self.schedule_steps is None:
            raise ValueError("lr_schedule 'cosine' needs schedule_steps (fixed, so staged runs share one schedule)")
        if self.mode == "lora" and self.stage != "transformer":
            raise ValueError("stage 'vae' is for --from-scratch; a LoRA keeps its model's VAE")
        if self.mode == "lora" and self.vae is not None:
            raise ValueError("vae is for --from-scratch; a LoRA keeps its model's VAE")
        if self.vae_decoder_only and (self.stage != "vae" or self.vae is None):
            raise ValueError("vae_decoder_only fine-tunes the decoder of a trained VAE: it needs stage 'vae' and vae")
        if self.vae_inflate and (self.stage != "vae" or self.vae is None or self.vae_decoder_only):
            raise ValueError("vae_inflate starts a trained single-frame VAE on clips: it needs stage 'vae' and vae, "
                             "and trains the whole VAE (not vae_decoder_only)")
        if self.init is not None and (self.mode != "scratch" or self.stage != "transformer"):
            raise ValueError("init (--init) starts a --from-scratch transformer stage from an earlier run's model folder; "
                             "a LoRA starts from --model, a VAE stage from --vae")
        if self.m2v_from_t2v and self.init is None:
            raise ValueError("m2v_from_t2v (--m2v-from-t2v) starts the memory model from --init's first-shot model: "
                             "it needs init")
        if self.mode == "lora" and self.train_text_encoder:
            raise ValueError("train_text_encoder is for --from-scratch; a LoRA leaves the text encoder frozen")
        return self

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1e-4 if self.mode == "lora" else 3e-4

    def fingerprint(self) -> dict:
        """The settings a resumed run must share with the checkpoint (everything but RESUMABLE_FIELDS)."""
        data = self.model_dump(mode="json")
        return {k: v for k, v in data.items() if k not in RESUMABLE_FIELDS}
