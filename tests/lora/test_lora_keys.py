"""Key normalisation and the original-Wan -> diffusers module table (SPEC 5)."""

from __future__ import annotations

import pytest

from storymem_cli.models.lora_keys import (
    TENSORS_PER_BLOCK,
    WAN_TO_DIFFUSERS,
    LoraKey,
    expected_keys,
    parse_key,
    parse_peft_key,
)


def test_table_agrees_with_diffusers_own_wan_converter():
    """diffusers' converter for original-Wan LoRAs (``diffusion_model.`` keys) is an independent
    oracle for the module renames."""
    import torch
    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_wan_lora_to_diffusers

    original = {
        f"diffusion_model.blocks.0.{module}.lora_{f}.weight": torch.zeros(1, 1)
        for module in WAN_TO_DIFFUSERS
        for f in "AB"
    }
    converted = set(_convert_non_diffusers_wan_lora_to_diffusers(original))
    ours = {f"transformer.{k.peft_key}" for k in expected_keys(1)}
    assert converted == ours
    assert len(ours) == TENSORS_PER_BLOCK == 20


@pytest.mark.parametrize(
    "key",
    [
        "base_model.model.blocks.7.cross_attn.o.lora_B.weight",
        "blocks.7.cross_attn.o.lora_B.weight",
        "base_model.model.blocks.7.cross_attn.o.lora_B.default.weight",
        "module.base_model.model.blocks.7.cross_attn.o.lora_B.weight",
        "diffusion_model.blocks.7.cross_attn.o.lora_B.weight",
        "module.diffusion_model.blocks.7.cross_attn.o.lora_B.default.weight",
    ],
)
def test_key_variants_normalise_to_one_key(key):
    parsed = parse_key(key)
    assert parsed == LoraKey(7, "cross_attn.o", "B")
    assert parsed.diffusers_module == "blocks.7.attn2.to_out.0"
    assert parsed.peft_key == "blocks.7.attn2.to_out.0.lora_B.weight"
    assert parsed.published_key == "base_model.model.blocks.7.cross_attn.o.lora_B.weight"


@pytest.mark.parametrize(
    "key",
    [
        "base_model.model.blocks.0.self_attn.norm_q.lora_A.weight",  # not a target layer
        "base_model.model.blocks.0.ffn.1.lora_A.weight",  # GELU has no weight
        "base_model.model.blocks.0.self_attn.q.lora_A.bias",
        "base_model.model.blocks.0.self_attn.q.lora_magnitude_vector.weight",  # DoRA
        "base_model.model.blocks.0.self_attn.q.weight",  # a base weight, not a LoRA
        "transformer.blocks.0.attn1.to_q.lora_A.weight",  # diffusers layout: a style LoRA
        "base_model.model.head.head.lora_A.weight",
        "foo.blocks.0.self_attn.q.lora_A.weight",
        "base_model.model.blocks.x.self_attn.q.lora_A.weight",
    ],
)
def test_other_keys_are_not_storymem_keys(key):
    assert parse_key(key) is None


def test_peft_parameter_names_map_back():
    assert parse_peft_key("blocks.3.ffn.net.0.proj.lora_A.storymem.weight", "storymem") == LoraKey(3, "ffn.0", "A")
    assert parse_peft_key("blocks.3.attn1.to_out.0.lora_B.storymem.weight", "storymem") == LoraKey(
        3, "self_attn.o", "B"
    )
    assert parse_peft_key("blocks.3.attn1.to_out.0.lora_B.other.weight", "storymem") is None
    assert parse_peft_key("condition_embedder.time_proj.lora_A.storymem.weight", "storymem") is None


def test_every_key_round_trips():
    keys = expected_keys(40)
    assert len(keys) == 800
    assert len({k.published_key for k in keys}) == 800
    for key in keys:
        assert parse_key(key.published_key) == key
        peft_param = key.peft_key.replace(f"lora_{key.factor}.weight", f"lora_{key.factor}.storymem.weight")
        assert parse_peft_key(peft_param, "storymem") == key
