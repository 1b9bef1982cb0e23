"""The real Wan2.2 A14B experts, built on the meta device (no memory, no weights): the
published LoRA layout (40 blocks x 20 tensors = 800 per expert, rank 128) fits them."""

from __future__ import annotations

import pytest
import torch

from storymem_cli.models.lora import LoraError, check_storymem_lora, inject_storymem_lora, rslora_scale
from storymem_cli.models.lora_keys import expected_keys
from storymem_cli.models.wan_a14b import a14b_transformer_config, build_meta_transformer

RANK = 128


@pytest.fixture(scope="module")
def a14b_i2v():
    return build_meta_transformer(a14b_transformer_config("i2v"))


def _published_meta_lora(transformer, rank=RANK):
    """The key list and shapes of a release file for this transformer, as meta tensors."""
    out = {}
    for key in expected_keys(len(transformer.blocks)):
        linear = transformer.get_submodule(key.diffusers_module)
        shape = (rank, linear.in_features) if key.factor == "A" else (linear.out_features, rank)
        out[key.published_key] = torch.empty(shape, device="meta")
    return out


def test_a14b_config_builds_the_real_size_on_meta(a14b_i2v):
    params = list(a14b_i2v.parameters())
    assert {p.device.type for p in params} == {"meta"}
    assert 14.0e9 < sum(p.numel() for p in params) < 14.6e9  # "A14B": ~14B per expert
    assert len(a14b_i2v.blocks) == 40
    assert a14b_i2v.blocks[0].attn1.to_q.weight.shape == (5120, 5120)
    assert a14b_i2v.blocks[0].ffn.net[0].proj.weight.shape == (13824, 5120)
    assert a14b_i2v.patch_embedding.weight.shape == (5120, 36, 1, 2, 2)
    assert a14b_i2v.blocks[0].attn2.add_k_proj is None  # no CLIP image branch in Wan2.2


def test_published_layout_maps_onto_both_a14b_models(a14b_i2v):
    t2v = build_meta_transformer(a14b_transformer_config("t2v"))
    assert t2v.patch_embedding.weight.shape[1] == 16
    for model in (a14b_i2v, t2v):
        lora = _published_meta_lora(model)
        assert len(lora) == 800
        plan = check_storymem_lora(lora, model, source="meta")
        assert (plan.rank, plan.tensors) == (RANK, 800)


def test_peft_injects_all_400_layers_at_full_size_on_meta():
    from peft.tuners.lora import LoraLayer

    model = build_meta_transformer(a14b_transformer_config("i2v"))
    lora = _published_meta_lora(model)
    plan = check_storymem_lora(lora, model, source="meta")
    inject_storymem_lora(model, lora, plan, alpha=128.0)
    layers = {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}
    assert len(layers) == 400  # 40 blocks x 10 linear layers, nothing else
    assert all(name.startswith("blocks.") for name in layers)
    ffn = layers["blocks.39.ffn.net.2"]
    assert ffn.lora_A["storymem"].weight.shape == (RANK, 13824)
    assert ffn.lora_B["storymem"].weight.shape == (5120, RANK)
    assert ffn.scaling["storymem"] == pytest.approx(rslora_scale(128.0, RANK)) == pytest.approx(11.3137, abs=1e-4)


@pytest.mark.parametrize(
    "mutate, pattern",
    [
        (
            lambda d: d.__setitem__(
                "base_model.model.blocks.39.ffn.0.lora_A.weight", torch.empty(RANK, 5121, device="meta")
            ),
            r"needs \[128, 5120\]",
        ),
        (lambda d: d.pop("base_model.model.blocks.20.cross_attn.v.lora_B.weight"), "block 20 lacks"),
        (
            lambda d: d.__setitem__(
                "base_model.model.blocks.40.ffn.2.lora_A.weight", torch.empty(RANK, 13824, device="meta")
            ),
            r"block\(s\) \[40\]",
        ),
        (
            lambda d: d.__setitem__(
                "base_model.model.blocks.0.self_attn.q.lora_B.weight", torch.empty(5120, 64, device="meta")
            ),
            "rank 64",
        ),
        (
            lambda d: d.__setitem__(
                "base_model.model.patch_embedding.lora_A.weight", torch.empty(RANK, 36, device="meta")
            ),
            "patch_embedding",
        ),
    ],
    ids=["shape", "missing", "extra-block", "rank", "unknown"],
)
def test_mutated_full_size_lora_is_rejected(a14b_i2v, mutate, pattern):
    lora = _published_meta_lora(a14b_i2v)
    mutate(lora)
    with pytest.raises(LoraError, match=pattern):
        check_storymem_lora(lora, a14b_i2v, source="meta")


def test_a_lora_for_the_5b_model_is_rejected_on_a14b(a14b_i2v):
    ti2v_5b = {**a14b_transformer_config("t2v"), "num_attention_heads": 24, "ffn_dim": 14336, "num_layers": 30}
    small = build_meta_transformer(ti2v_5b)
    with pytest.raises(LoraError, match="missing in 10 block"):
        check_storymem_lora(_published_meta_lora(small), a14b_i2v, source="5b")
    with pytest.raises(LoraError, match=r"block\(s\) \[30, 31, 32, 33, 34\]"):
        check_storymem_lora(_published_meta_lora(a14b_i2v), small, source="14b")
