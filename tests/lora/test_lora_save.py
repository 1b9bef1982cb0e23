"""save_storymem_lora writes the published layout; loading it back gives the same model."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig

from storymem_cli.models.lora import ALPHA_FROM_FILE, LoraError, load_storymem_lora, read_lora_file, save_storymem_lora
from storymem_cli.models.lora_keys import DIFFUSERS_TARGET_REGEX


def _trained(make_transformer, seed, *, rslora=True, adapter="storymem"):
    """A transformer with a peft adapter as `storymem train` would leave it (random, non-zero B)."""
    model = make_transformer(seed=seed)
    torch.manual_seed(100 + seed)
    config = LoraConfig(
        r=4, lora_alpha=8, use_rslora=rslora, target_modules=DIFFUSERS_TARGET_REGEX, init_lora_weights=False
    )
    model.add_adapter(config, adapter_name=adapter)
    return model


def test_save_then_load_gives_the_same_outputs(tmp_path, make_transformer, forward):
    trained_high, trained_low = _trained(make_transformer, 0), _trained(make_transformer, 1)
    high_file = save_storymem_lora(trained_high, tmp_path / "backbone_high_noise.safetensors")
    low_file = save_storymem_lora(trained_low, tmp_path / "backbone_low_noise.safetensors")

    tensors, metadata = read_lora_file(high_file)
    assert len(tensors) == 2 * 20
    assert all(
        k.startswith("base_model.model.blocks.") and k.endswith((".lora_A.weight", ".lora_B.weight")) for k in tensors
    )
    assert "base_model.model.blocks.1.ffn.0.lora_A.weight" in tensors
    assert metadata == {"lora_alpha": "8.0"}

    high, low = make_transformer(seed=0), make_transformer(seed=1)
    base = forward(high)
    report = load_storymem_lora(high, low, high_file, low_file)
    assert (report["alpha"], report["alpha_source"]) == (8.0, ALPHA_FROM_FILE)  # not the rank's 4: the saved scale
    assert (forward(trained_high) - base).abs().max() > 1e-3
    torch.testing.assert_close(forward(high), forward(trained_high), atol=1e-5, rtol=0)
    torch.testing.assert_close(forward(low), forward(trained_low), atol=1e-5, rtol=0)


def test_save_refuses_what_the_layout_cannot_express(tmp_path, make_transformer):
    with pytest.raises(LoraError, match="not rsLoRA"):
        save_storymem_lora(_trained(make_transformer, 0, rslora=False), tmp_path / "a.safetensors")
    with pytest.raises(LoraError, match="no LoRA adapter named 'storymem'"):
        save_storymem_lora(_trained(make_transformer, 0, adapter="other"), tmp_path / "a.safetensors")
    with pytest.raises(LoraError, match="saved as .safetensors"):
        save_storymem_lora(_trained(make_transformer, 0), tmp_path / "a.pth")
