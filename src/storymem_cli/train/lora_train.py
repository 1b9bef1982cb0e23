"""A trainable StoryMem LoRA on a diffusers Wan transformer (peft, rsLoRA, the release's 20 layers per block).

The adapter has the loader's name and target layers, so ``models.lora.save_storymem_lora`` writes it in
the published key layout and ``load_storymem_lora`` reads it back.
"""

from __future__ import annotations

import torch

from storymem_cli.models.lora import STORYMEM_ADAPTER_NAME
from storymem_cli.models.lora_keys import DIFFUSERS_TARGET_REGEX


def add_trainable_lora(
    transformer: torch.nn.Module, rank: int, alpha: float, dropout: float, seed: int
) -> list[torch.nn.Parameter]:
    """Freeze ``transformer`` and add a LoRA (B = 0, so the model starts unchanged); returns its parameters."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        use_rslora=True,  # scale alpha / sqrt(r), as the release (SPEC 5)
        target_modules=DIFFUSERS_TARGET_REGEX,
        lora_dropout=dropout,
        bias="none",
    )
    transformer.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # lora_A's Kaiming init: the same adapter for the same seed
        inject_adapter_in_model(config, transformer, adapter_name=STORYMEM_ADAPTER_NAME)
    transformer._hf_peft_config_loaded = True  # diffusers' fuse/unfuse/set_adapters see the adapter
    params = []
    for name, param in transformer.named_parameters():
        is_lora = f".{STORYMEM_ADAPTER_NAME}." in name and ".lora_" in name
        param.requires_grad_(is_lora)
        if is_lora:
            params.append(param)
    if not params:
        raise RuntimeError("peft placed no LoRA layer on the transformer's StoryMem target modules")
    return params
