"""load_style_lora: an ordinary diffusers / ComfyUI Wan LoRA on both experts, with a strength."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_file

from storymem_cli.models.lora import LoraError, load_storymem_lora, load_style_lora
from storymem_cli.models.lora_keys import LoraKey

RANK = 2
STYLE_MODULES = ("self_attn.q", "self_attn.v", "ffn.2")


def _style(transformer, seed=7) -> dict[LoraKey, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for block in range(len(transformer.blocks)):
        for module in STYLE_MODULES:
            for factor in "AB":
                key = LoraKey(block, module, factor)
                linear = transformer.get_submodule(key.diffusers_module)
                shape = (RANK, linear.in_features) if factor == "A" else (linear.out_features, RANK)
                out[key] = torch.randn(shape, generator=gen) * 0.2
    return out


def _merge(transformer, style, scale):
    """W + scale * B @ A on a copy, by hand."""
    merged = copy.deepcopy(transformer)
    with torch.no_grad():
        for key, a in style.items():
            if key.factor == "A":
                b = style[LoraKey(key.block, key.module, "B")]
                merged.get_submodule(key.diffusers_module).weight += scale * (b @ a)
    return merged


def _pipe(high, low):
    from diffusers import WanPipeline

    return WanPipeline(tokenizer=None, text_encoder=None, vae=None, scheduler=None, transformer=high, transformer_2=low)


def test_diffusers_format_style_lora_on_both_experts(tmp_path, experts, forward):
    high, low = experts
    style = _style(high)
    path = tmp_path / "style.safetensors"
    save_file({f"transformer.{k.peft_key}": v for k, v in style.items()}, str(path))
    # no alpha in the file: diffusers uses alpha = r, scale 1; the strength multiplies it
    want_high, want_low = _merge(high, style, 0.7), _merge(low, style, 0.7)
    full_strength = _merge(high, style, 1.0)
    load_style_lora(_pipe(high, low), path, 0.7)
    assert (forward(want_high) - forward(full_strength)).abs().max() > 1e-3
    torch.testing.assert_close(forward(high), forward(want_high), atol=1e-4, rtol=0)
    torch.testing.assert_close(forward(low), forward(want_low), atol=1e-4, rtol=0)


def test_comfy_format_with_alpha_is_not_rescaled_twice(tmp_path, experts, forward):
    """diffusers' converter folds alpha/r into the tensors in place; each expert must get the
    file's values, not the already-folded ones."""
    high, low = experts
    style = _style(high)
    kohya = {"A": "lora_down", "B": "lora_up"}
    tensors = {f"diffusion_model.blocks.{k.block}.{k.module}.{kohya[k.factor]}.weight": v for k, v in style.items()}
    for block in range(len(high.blocks)):
        for module in STYLE_MODULES:
            tensors[f"diffusion_model.blocks.{block}.{module}.alpha"] = torch.tensor(1.0)  # alpha/r = 0.5
    path = tmp_path / "comfy.safetensors"
    save_file(tensors, str(path))
    want_high, want_low = _merge(high, style, 0.5 * 2.0), _merge(low, style, 0.5 * 2.0)
    load_style_lora(_pipe(high, low), path, 2.0)
    torch.testing.assert_close(forward(high), forward(want_high), atol=1e-4, rtol=0)
    torch.testing.assert_close(forward(low), forward(want_low), atol=1e-4, rtol=0)


@pytest.mark.parametrize("fuse", [False, True])
def test_style_lora_adds_to_the_storymem_lora(tmp_path, experts, forward, make_lora, merge_by_hand, fuse):
    high, low = experts
    lora_high, lora_low = make_lora(high, seed=1), make_lora(low, seed=2)
    high_file, low_file = tmp_path / "backbone_high_noise.safetensors", tmp_path / "backbone_low_noise.safetensors"
    save_file(lora_high, str(high_file))
    save_file(lora_low, str(low_file))
    style = _style(high)
    style_file = tmp_path / "style.safetensors"
    save_file({f"transformer.{k.peft_key}": v for k, v in style.items()}, str(style_file))
    want_high = _merge(merge_by_hand(high, lora_high), style, 0.5)
    want_low = _merge(merge_by_hand(low, lora_low), style, 0.5)

    load_storymem_lora(high, low, high_file, low_file, fuse=fuse)
    load_style_lora(_pipe(high, low), style_file, 0.5)

    for model in (high, low):
        assert model.blocks[0].attn1.to_q.merged is fuse  # a fused StoryMem LoRA stays fused
        assert set(model.blocks[0].attn1.to_q.merged_adapters) == ({"storymem", "style_style"} if fuse else set())
        assert model.blocks[1].attn2.to_k.merged is fuse  # a layer the style LoRA does not touch
    torch.testing.assert_close(forward(high), forward(want_high), atol=1e-4, rtol=0)
    torch.testing.assert_close(forward(low), forward(want_low), atol=1e-4, rtol=0)


def test_storymem_layout_file_is_not_a_style_lora(tmp_path, experts, make_lora):
    high, low = experts
    path = tmp_path / "backbone_high_noise.safetensors"
    save_file(make_lora(high), str(path))
    with pytest.raises(LoraError, match="is a StoryMem LoRA") as err:
        load_style_lora(_pipe(high, low), path, 1.0)
    assert "--lora" in err.value.hint


def test_a_file_diffusers_cannot_place_is_an_error(tmp_path, experts, forward):
    high, low = experts
    path = tmp_path / "other.safetensors"
    save_file(
        {
            "transformer.not_a_layer.lora_A.weight": torch.zeros(2, 4),
            "transformer.not_a_layer.lora_B.weight": torch.zeros(4, 2),
        },
        str(path),
    )
    with pytest.raises(LoraError, match=str(path)):
        load_style_lora(_pipe(high, low), path, 1.0)


# diffusers' own cleanup of the failed adapter warns about deleting an active adapter
@pytest.mark.filterwarnings("ignore:Adapter style_.* was active which is now deleted")
def test_style_lora_that_fits_one_expert_only_loads_into_neither(tmp_path, make_transformer, forward):
    high, low = make_transformer(seed=0), make_transformer(seed=1, ffn_dim=40)
    base_high = forward(high)
    style = _style(high)
    path = tmp_path / "my.style.v2.safetensors"
    save_file({f"transformer.{k.peft_key}": v for k, v in style.items()}, str(path))
    with pytest.raises(LoraError, match="could not load it into transformer_2"):
        load_style_lora(_pipe(high, low), path, 1.0)
    assert "style_my_style_v2" not in (getattr(high, "peft_config", None) or {})
    torch.testing.assert_close(forward(high), base_high, atol=0, rtol=0)


def test_adapter_name_from_a_dotted_file_name(tmp_path, experts):
    high, low = experts
    path = tmp_path / "my.style.v2.safetensors"
    save_file({f"transformer.{k.peft_key}": v for k, v in _style(high).items()}, str(path))
    load_style_lora(_pipe(high, low), path, 1.0)
    assert "style_my_style_v2" in high.peft_config and "style_my_style_v2" in low.peft_config
    with pytest.raises(LoraError, match="already has an adapter named 'style_my_style_v2'"):
        load_style_lora(_pipe(high, low), path, 1.0)
    with pytest.raises(LoraError, match="finite"):
        load_style_lora(_pipe(high, low), path, float("nan"), adapter_name="other")


def test_one_file_per_expert(tmp_path, experts, forward):
    high, low = experts
    style_high, style_low = _style(high, seed=7), _style(low, seed=8)
    f_high, f_low = tmp_path / "style_high.safetensors", tmp_path / "style_low.safetensors"
    save_file({f"transformer.{k.peft_key}": v for k, v in style_high.items()}, str(f_high))
    save_file({f"transformer.{k.peft_key}": v for k, v in style_low.items()}, str(f_low))
    want_high, want_low = _merge(high, style_high, 0.8), _merge(low, style_low, 0.8)
    pipe = _pipe(high, low)
    load_style_lora(pipe, f_high, 0.8, experts="high")
    load_style_lora(pipe, f_low, 0.8, experts="low")
    assert set(high.peft_config) == {"style_style_high"}
    assert set(low.peft_config) == {"style_style_low"}
    torch.testing.assert_close(forward(high), forward(want_high), atol=1e-4, rtol=0)
    torch.testing.assert_close(forward(low), forward(want_low), atol=1e-4, rtol=0)


# diffusers' own cleanup of the failed adapter warns about deleting an active adapter
@pytest.mark.filterwarnings("ignore:Adapter style_.* was active which is now deleted")
def test_failed_style_lora_leaves_a_fused_storymem_lora_fused(
    tmp_path, make_transformer, make_lora, forward, merge_by_hand
):
    high, low = make_transformer(seed=0), make_transformer(seed=1, ffn_dim=40)
    lora_high, lora_low = make_lora(high, seed=1), make_lora(low, seed=2)
    high_file, low_file = tmp_path / "backbone_high_noise.safetensors", tmp_path / "backbone_low_noise.safetensors"
    save_file(lora_high, str(high_file))
    save_file(lora_low, str(low_file))
    want_high = merge_by_hand(high, lora_high)
    load_storymem_lora(high, low, high_file, low_file, fuse=True)
    style_file = tmp_path / "style.safetensors"
    save_file({f"transformer.{k.peft_key}": v for k, v in _style(high).items()}, str(style_file))

    with pytest.raises(LoraError, match="transformer_2"):
        load_style_lora(_pipe(high, low), style_file, 1.0)

    assert set(high.peft_config) == {"storymem"}
    assert high.blocks[0].attn1.to_q.merged_adapters == ["storymem"]
    torch.testing.assert_close(forward(high), forward(want_high), atol=1e-4, rtol=0)
