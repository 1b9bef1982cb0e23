"""Small Wan transformers built in code, synthetic LoRAs in the published layout, hand merging."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import pytest
import torch

from storymem_cli.models.lora_keys import expected_keys

SMALL_CONFIG = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 2,
    "attention_head_dim": 16,  # rope splits 16 into t=8, h=4, w=4
    "in_channels": 8,
    "out_channels": 4,
    "text_dim": 16,
    "freq_dim": 16,
    "ffn_dim": 48,  # != dim, so ffn.0 and ffn.2 have different shapes
    "num_layers": 2,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 32,
}


def build_transformer(seed: int = 0, **overrides):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(**{**SMALL_CONFIG, **overrides}).eval()


def synthetic_lora(transformer, rank: int = 4, seed: int = 1, std: float = 0.05) -> dict[str, torch.Tensor]:
    """A complete LoRA for ``transformer`` in the release's key layout, non-zero A and B."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key in expected_keys(len(transformer.blocks)):
        linear = transformer.get_submodule(key.diffusers_module)
        shape = (rank, linear.in_features) if key.factor == "A" else (linear.out_features, rank)
        out[key.published_key] = torch.randn(shape, generator=gen) * std
    return out


def hand_merged(transformer, lora: dict[str, torch.Tensor], alpha: float | None = None, strength: float = 1.0):
    """A copy of ``transformer`` with W + strength * alpha/sqrt(r) * B @ A, computed here, not by peft;
    alpha None: the rank, as the release sets it."""
    from storymem_cli.models.lora_keys import parse_key

    merged = copy.deepcopy(transformer)
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in lora.items():
        parsed = parse_key(key)
        pairs.setdefault(parsed.diffusers_module, {})[parsed.factor] = tensor
    with torch.no_grad():
        for module, ab in pairs.items():
            rank = ab["A"].shape[0]
            linear = merged.get_submodule(module)
            linear.weight += strength * (alpha or rank) / math.sqrt(rank) * (ab["B"] @ ab["A"])
    return merged


@pytest.fixture
def forward() -> Callable[[torch.nn.Module], torch.Tensor]:
    """The transformer's output on fixed inputs."""
    gen = torch.Generator().manual_seed(123)
    hidden = torch.randn(1, SMALL_CONFIG["in_channels"], 2, 4, 4, generator=gen)
    text = torch.randn(1, 5, SMALL_CONFIG["text_dim"], generator=gen)
    timestep = torch.tensor([500])

    def run(model: torch.nn.Module) -> torch.Tensor:
        with torch.no_grad():
            return model(hidden, timestep, text, return_dict=False)[0]

    return run


@pytest.fixture
def experts():
    """Two different experts, like transformer / transformer_2."""
    return build_transformer(seed=0), build_transformer(seed=1)


@pytest.fixture
def make_transformer():
    return build_transformer


@pytest.fixture
def make_lora():
    return synthetic_lora


@pytest.fixture
def merge_by_hand():
    return hand_merged
