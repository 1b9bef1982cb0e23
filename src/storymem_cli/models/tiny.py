"""The tiny model: every component of a Wan2.2 story model, built in code with random weights.

Same classes as the real thing (AutoencoderKLWan, UMT5EncoderModel, WanTransformer3DModel with two
experts each for T2V and I2V), saved as a model directory laid out like the hub repos, so the real-size
loading path runs unchanged. For tests and CPU smoke runs only: its videos are noise.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from storymem_cli.config import TEXT_ENCODER_MAX_TOKENS
from storymem_cli.models.cache import cached_model_dir
from storymem_cli.models.presets import TINY

TINY_SEED = 0  # every tiny component is drawn from this seed: the same model on every machine
TINY_FORMAT = 1  # bump when the layout below changes, so cached directories are rebuilt
MODEL_FILE = "storymem_model.json"  # what makes a folder a storymem model directory

TEXT_DIM = 32
TINY_TEXT_ENCODER = {
    "vocab_size": 259, "d_model": TEXT_DIM, "d_kv": 8, "d_ff": 64, "num_layers": 1, "num_heads": 4,
    "relative_attention_num_buckets": 8, "relative_attention_max_distance": 16,
    "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
}  # fmt: skip  # vocab: 3 specials + 256 bytes
TINY_VAE = {"base_dim": 8, "z_dim": 16, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 1, "temperal_downsample": [False, True, True]}
# z_dim 16 and the 4x8x8 stride as Wan's VAE, so T2V takes 16 channels and I2V 16 + 4 + 16 = 36.
TINY_TRANSFORMER = {
    "patch_size": (1, 2, 2), "num_attention_heads": 2, "attention_head_dim": 12, "out_channels": 16,
    "text_dim": TEXT_DIM, "freq_dim": 16, "ffn_dim": 32, "num_layers": 2,
}  # fmt: skip  # head_dim 12: rope splits it 4 (time) + 4 + 4
TINY_CHANNELS = {"t2v": 16, "i2v": 36}
BOUNDARY = {"t2v": TINY.t2v.boundary_ratio, "i2v": TINY.m2v.boundary_ratio}


def tiny_config_hash() -> str:
    # Not the packages' __version__: importing them imports torch (4 s), and a dry run needs no torch.
    from importlib.metadata import version

    spec = [TINY_FORMAT, TINY_SEED, TINY_TEXT_ENCODER, TINY_VAE, TINY_TRANSFORMER, TINY_CHANNELS, BOUNDARY,
            version("diffusers"), version("transformers")]  # fmt: skip
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


TOKENIZER_SPECIALS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2: UMT5's pad and eos ids


def wrap_tokenizer(tok: Any) -> Any:
    """A ``tokenizers.Tokenizer`` whose vocabulary starts with TOKENIZER_SPECIALS, wrapped like UMT5's:
    eos appended, saved and loaded by transformers like a real tokenizer."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
        model_max_length=TEXT_ENCODER_MAX_TOKENS,
    )  # fmt: skip


def build_tokenizer() -> Any:
    """A byte-level tokenizer (any text, any language) wrapped like a real one: pad 0, eos 1, unk 2."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {tok: i for i, tok in enumerate([*TOKENIZER_SPECIALS, *sorted(pre_tokenizers.ByteLevel.alphabet())])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return wrap_tokenizer(tok)


def build_tiny_components(seed: int = TINY_SEED) -> dict[str, Any]:
    """tokenizer, text_encoder, vae, scheduler and the four transformers, from ``seed``."""
    import torch
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanTransformer3DModel,
    )
    from transformers import UMT5Config, UMT5EncoderModel

    def seeded(offset: int, make: Any) -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + offset)
            return make().eval()

    def transformer(kind: str) -> Any:
        return WanTransformer3DModel(in_channels=TINY_CHANNELS[kind], **TINY_TRANSFORMER)

    return {
        "tokenizer": build_tokenizer(),
        "text_encoder": seeded(0, lambda: UMT5EncoderModel(UMT5Config(**TINY_TEXT_ENCODER))),
        "vae": seeded(1, lambda: AutoencoderKLWan(**TINY_VAE)),
        "scheduler": UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=TINY.m2v.flow_shift
        ),
        "t2v_transformer": seeded(2, lambda: transformer("t2v")),
        "t2v_transformer_2": seeded(3, lambda: transformer("t2v")),
        "i2v_transformer": seeded(4, lambda: transformer("i2v")),
        "i2v_transformer_2": seeded(5, lambda: transformer("i2v")),
    }


def save_tiny_model(dest: Path, seed: int = TINY_SEED) -> Path:
    """Write a model directory: ``i2v/`` and ``t2v/`` diffusers repos and ``storymem_model.json``."""
    from diffusers import WanImageToVideoPipeline, WanPipeline

    parts = build_tiny_components(seed)
    shared = {k: parts[k] for k in ("tokenizer", "text_encoder", "vae", "scheduler")}
    WanImageToVideoPipeline(
        **shared, transformer=parts["i2v_transformer"], transformer_2=parts["i2v_transformer_2"],
        boundary_ratio=BOUNDARY["i2v"],
    ).save_pretrained(dest / TINY.i2v_source)  # fmt: skip
    WanPipeline(
        **shared, transformer=parts["t2v_transformer"], transformer_2=parts["t2v_transformer_2"],
        boundary_ratio=BOUNDARY["t2v"],
    ).save_pretrained(dest / TINY.t2v_source)  # fmt: skip
    record = {"format": TINY_FORMAT, "preset": TINY.model_dump(mode="json")}
    (dest / MODEL_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return dest


def tiny_model_dir() -> Path:
    """The tiny model directory, built once per configuration and reused."""
    return cached_model_dir(f"tiny-{tiny_config_hash()}", MODEL_FILE, save_tiny_model)
