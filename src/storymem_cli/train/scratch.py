"""Small Wan-architecture models trained from scratch: their sizes, their components, their folder.

The components are the real classes (UMT5EncoderModel, AutoencoderKLWan, WanTransformer3DModel), so a
trained model runs through the same pipeline, memory and renderer as A14B. The exported folder is laid
out like the tiny preset's (``i2v/``, ``t2v/``, ``storymem_model.json``) and loads with ``--model PATH``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from storymem_cli.config import (
    M2V_SAMPLING,
    T2V_SAMPLING,
    VideoConfig,
)
from storymem_cli.errors import InvalidInputError
from storymem_cli.models.presets import TOY, MemoryDefaults, ModelPreset
from storymem_cli.models.tiny import (
    MODEL_FILE,
    TINY_TEXT_ENCODER,
    TINY_TRANSFORMER,
    TINY_VAE,
    TOKENIZER_SPECIALS,
    build_tokenizer,
    wrap_tokenizer,
)
from storymem_cli.train.checkpoint import write_folder_atomic



class ScratchSize(BaseModel):
    """Shapes of a from-scratch model and the defaults its preset records."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str
    vocab: Literal["toy", "bytes"]  # toy: one token per word of toy.captions.vocab(); bytes: any text
    text_encoder: dict[str, Any]  # UMT5Config fields (vocab_size is set from the tokenizer)
    vae: dict[str, Any]  # AutoencoderKLWan arguments (z_dim 16 and the 4x8x8 stride like Wan's)
    transformer: dict[str, Any]  # WanTransformer3DModel arguments except in_channels
    video: VideoConfig
    steps: int  # sampling steps the preset defaults to
    embedder: str = "tiny"  # memory frame embedder the preset names


_TOY_TEXT = {**TINY_TEXT_ENCODER, "d_model": 64, "d_kv": 16, "d_ff": 128, "num_layers": 2}
# 4x spatial stride (two down levels, both temporal: 4x in time as Wan's), not Wan's 8x: at 8x a 64x64
# frame is 8x8 latent pixels, and a Wan VAE trained from scratch on one CPU core still gave every clip
# one flat grey frame after 200 steps; at 4x the sprites come through within the toy budget.
_TOY_VAE = {**TINY_VAE, "base_dim": 16, "dim_mult": [1, 2, 2], "temperal_downsample": [True, True],
            "scale_factor_spatial": 4}  # fmt: skip
SCRATCH_SIZES: dict[str, ScratchSize] = {
    # Same shapes as the tiny preset (tests, smoke runs): seconds per hundred steps on a CPU.
    "tiny": ScratchSize(
        description="tiny model trained from scratch (test size)", vocab="toy",
        text_encoder=dict(TINY_TEXT_ENCODER), vae=dict(TINY_VAE), transformer=dict(TINY_TRANSFORMER),
        video=VideoConfig(width=64, height=48, frames=9, fps=8), steps=4,
    ),
    # The toy world model: 32x32, 17 frames (5 latent frames of 8x8, patches of 2x2: 16 tokens per frame);
    # ~1.3 M parameters per transformer, all parts well under 25 MB. At 64x64 the VAE took most of the
    # 90-minute budget and still lost sprite shapes; 32x32 costs a quarter per step (docs/training.md).
    "toy": ScratchSize(
        description="toy-world model trained from scratch by `storymem train` (32x32, 17 frames)", vocab="toy",
        text_encoder=_TOY_TEXT, vae=_TOY_VAE,
        transformer={"patch_size": (1, 2, 2), "num_attention_heads": 4, "attention_head_dim": 32,
                     "out_channels": 16, "text_dim": _TOY_TEXT["d_model"], "freq_dim": 64, "ffn_dim": 512,
                     "num_layers": 4},
        video=TOY.video, steps=TOY.steps, embedder=TOY.memory.embedder,
    ),
}  # fmt: skip


def scratch_size(name: str) -> ScratchSize:
    """A named size, or a JSON file holding a :class:`ScratchSize`."""
    if name in SCRATCH_SIZES:
        return SCRATCH_SIZES[name]
    path = Path(name).expanduser()
    if path.is_file():
        try:
            return ScratchSize.model_validate_json(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise InvalidInputError(f"{path}: not a valid model size file: {err}") from None
    raise InvalidInputError(
        f"unknown model size {name!r} for --from-scratch",
        hint=f"use one of {', '.join(SCRATCH_SIZES)}, or a JSON file with the fields of train.scratch.ScratchSize",
    )


def word_tokenizer(words: list[str]) -> Any:
    """One token per word (lower-cased, split on whitespace), pad 0, eos 1, unk 2, like UMT5's specials."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocab = {tok: i for i, tok in enumerate([*TOKENIZER_SPECIALS, *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return wrap_tokenizer(tok)


def build_tokenizer_for(size: ScratchSize) -> Any:
    if size.vocab == "bytes":
        return build_tokenizer()
    from storymem_cli.toy.captions import vocab

    return word_tokenizer(vocab())


def build_scratch_components(size: ScratchSize, seed: int) -> dict[str, Any]:
    """tokenizer, text_encoder, vae, scheduler, and the I2V (36 channels in) and T2V (16) transformers."""
    import torch
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanTransformer3DModel,
    )
    from transformers import UMT5Config, UMT5EncoderModel

    def seeded(offset: int, make: Any) -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1000 + offset)
            return make()

    tokenizer = build_tokenizer_for(size)
    z = size.vae.get("z_dim", 16)
    text_config = UMT5Config(**{**size.text_encoder, "vocab_size": len(tokenizer)})
    return {
        "tokenizer": tokenizer,
        "text_encoder": seeded(0, lambda: UMT5EncoderModel(text_config)),
        "vae": seeded(1, lambda: AutoencoderKLWan(**size.vae)),
        "scheduler": UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=M2V_SAMPLING.flow_shift
        ),
        "i2v": seeded(2, lambda: WanTransformer3DModel(in_channels=2 * z + 4, **size.transformer)),
        "t2v": seeded(3, lambda: WanTransformer3DModel(in_channels=z, **size.transformer)),
    }


def scratch_preset(name: str, size: ScratchSize) -> ModelPreset:
    return ModelPreset(
        name=name,
        description=size.description,
        video=size.video,
        steps=size.steps,
        memory=MemoryDefaults(embedder=size.embedder, aesthetic="none"),
        t2v=T2V_SAMPLING.model_copy(update={"steps": size.steps}),
        m2v=M2V_SAMPLING.model_copy(update={"steps": size.steps}),
        i2v_source="i2v",
        t2v_source="t2v",
        lora_source=None,
        transformer_dtype="float32",
        text_encoder_dtype="float32",
    )


def write_model_dir(folder: Path, parts: dict[str, Any], preset: ModelPreset) -> None:
    """Write a model folder into ``folder``: ``i2v/`` and ``t2v/`` diffusers repos and the preset record.

    One trained transformer per kind serves as both experts (``transformer`` and ``transformer_2``):
    a from-scratch model is trained on the full noise range, not split at the boundary.
    """
    from diffusers import WanImageToVideoPipeline, WanPipeline
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" bars on stderr would interleave with ours
    shared = {k: parts[k] for k in ("tokenizer", "text_encoder", "vae", "scheduler")}
    WanImageToVideoPipeline(
        **shared, transformer=parts["i2v"], transformer_2=parts["i2v"], boundary_ratio=preset.m2v.boundary_ratio
    ).save_pretrained(folder / preset.i2v_source)
    WanPipeline(
        **shared, transformer=parts["t2v"], transformer_2=parts["t2v"], boundary_ratio=preset.t2v.boundary_ratio
    ).save_pretrained(folder / preset.t2v_source)
    record = {"format": 1, "preset": preset.model_dump(mode="json")}
    (folder / MODEL_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def export_model_dir(dest: Path, parts: dict[str, Any], preset: ModelPreset) -> Path:
    """:func:`write_model_dir` atomically: built beside ``dest``, then renamed over it."""
    return write_folder_atomic(dest, lambda folder: write_model_dir(folder, parts, preset))
