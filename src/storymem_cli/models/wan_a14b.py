"""The real Wan2.2 A14B transformer config (each expert), as diffusers' WanTransformer3DModel takes it.

Source: diffusers' own conversion script that produced the hub's ``-Diffusers`` repos,
huggingface/diffusers ``scripts/convert_wan_to_diffusers.py`` (commit 7d5682739a1e),
``get_transformer_config("Wan2.2-I2V-14B-720p")`` (model_id Wan-AI/Wan2.2-I2V-A14B) and
``get_transformer_config("Wan2.2-T2V-A14B")``; the two differ only in ``in_channels``.
The keys the script leaves out (``image_dim``, ``rope_max_seq_len``, ``pos_embed_seq_len``)
take the class defaults, serialised as ``image_dim: null, rope_max_seq_len: 1024,
pos_embed_seq_len: null`` in the Wan2.2 A14B-shaped ``hf-internal-testing/tiny-wan22-transformer``
config.json. Cross-checked with the original Wan2.2 code (wan/configs/wan_i2v_A14B.py:
dim 5120, ffn_dim 13824, freq_dim 256, num_heads 40, num_layers 40, qk_norm, cross_attn_norm,
eps 1e-6). Wan2.2 A14B has no CLIP image branch (unlike Wan2.1 I2V: no image_dim/added_kv_proj_dim).

Used for the weightless full-size checks (meta device); the registry loads real
weights with their own config.json from the hub.
"""

from __future__ import annotations

from typing import Any, Literal

_COMMON: dict[str, Any] = {
    "patch_size": [1, 2, 2],  # (t, h, w) patchify of the 16-channel latent
    "num_attention_heads": 40,
    "attention_head_dim": 128,  # 40 x 128 = 5120 hidden size
    "out_channels": 16,  # Wan2.1 VAE z_dim
    "text_dim": 4096,  # UMT5-XXL hidden size
    "freq_dim": 256,  # sinusoidal timestep embedding width
    "ffn_dim": 13824,
    "num_layers": 40,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "image_dim": None,  # no CLIP image embedding in Wan2.2 A14B
    "added_kv_proj_dim": None,
    "rope_max_seq_len": 1024,
    "pos_embed_seq_len": None,
}

A14B_I2V_TRANSFORMER_CONFIG: dict[str, Any] = {
    **_COMMON,
    "in_channels": 36,  # noisy latent 16 + mask 4 + condition latent 16 (SPEC 2)
}
A14B_T2V_TRANSFORMER_CONFIG: dict[str, Any] = {
    **_COMMON,
    "in_channels": 16,
}


def a14b_transformer_config(kind: Literal["i2v", "t2v"] = "i2v") -> dict[str, Any]:
    """A fresh copy of the A14B expert config (both experts of a pipeline share it)."""
    source = A14B_I2V_TRANSFORMER_CONFIG if kind == "i2v" else A14B_T2V_TRANSFORMER_CONFIG
    return {k: (list(v) if isinstance(v, list) else v) for k, v in source.items()}


def build_meta_transformer(config: dict[str, Any]) -> Any:
    """A WanTransformer3DModel with every parameter on the ``meta`` device: shapes, no memory."""
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel

    with init_empty_weights():
        return WanTransformer3DModel.from_config(config)
