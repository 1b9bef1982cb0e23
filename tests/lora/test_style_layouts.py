"""Every community Wan LoRA layout (issue 30's table), built in code for a small transformer, loaded
through load_style_lora and compared with a hand merge: W + strength * alpha/rank * B @ A, bias +
strength * diff_b. What is not applied is warned about and counted; a file that cannot be a style
LoRA is refused naming the file and why."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import save_file

from storymem_cli.models.lora_adapters import fuse_active_adapters
from storymem_cli.models.lora_files import LoraError
from storymem_cli.models.lora_keys import WAN_TO_DIFFUSERS
from storymem_cli.models.lora_style import inspect_style_lora, load_style_lora

RANK = 2
STRENGTH = 0.7
ALL = tuple(WAN_TO_DIFFUSERS)
ATTENTION = tuple(m for m in ALL if "attn" in m)


def _pipe(high, low):
    from diffusers import WanPipeline

    return WanPipeline(tokenizer=None, text_encoder=None, vae=None, scheduler=None, transformer=high, transformer_2=low)


def _factors(transformer, modules, seed=5):
    """(block, Wan module) -> (A, B, bias delta) with random values."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for block in range(len(transformer.blocks)):
        for module in modules:
            linear = transformer.get_submodule(f"blocks.{block}.{WAN_TO_DIFFUSERS[module]}")
            a = torch.randn(RANK, linear.in_features, generator=gen) * 0.3
            b = torch.randn(linear.out_features, RANK, generator=gen) * 0.3
            out[block, module] = (a, b, torch.randn(linear.out_features, generator=gen) * 0.1)
    return out


@dataclass
class Layout:
    name: str
    prefix: str  # before "blocks.N.<module>" ("lora_unet_" joins with underscores)
    down_up: tuple[str, str] = ("lora_A", "lora_B")
    alpha: float | None = None  # an .alpha tensor per module
    modules: tuple[str, ...] = ALL
    diff_b: bool = False
    extras: int = 0  # lightx2v: .diff on a linear, norm .diff, diff_m: not applied
    diffusers_names: bool = False
    metadata_alpha: float | None = None  # diffusers' save_lora_weights metadata
    loaded_by: str = "path"

    def key(self, block: int, module: str, leaf: str) -> str:
        if self.diffusers_names:
            return f"transformer.blocks.{block}.{WAN_TO_DIFFUSERS[module]}.{leaf}"
        if self.prefix == "lora_unet_":
            return f"lora_unet_blocks_{block}_{module.replace('.', '_')}.{leaf}"
        return f"{self.prefix}blocks.{block}.{module}.{leaf}"

    def scale(self) -> float:
        alpha = self.alpha if self.alpha is not None else self.metadata_alpha
        return STRENGTH * (alpha / RANK if alpha is not None else 1.0)


LAYOUTS = [
    Layout("diffusers", "", diffusers_names=True),
    Layout("diffusers with alpha/rank in the metadata", "", diffusers_names=True, metadata_alpha=8.0),
    Layout("diffusion_model lora_A/B without alpha (diffusion-pipe, ai-toolkit)", "diffusion_model."),
    Layout("diffusion_model lora_A/B attention only", "diffusion_model.", modules=ATTENTION),
    Layout("diffusion_model lora_A/B with alpha", "diffusion_model.", alpha=1.0),
    Layout("ComfyUI lora_down/up with alpha", "diffusion_model.", ("lora_down", "lora_up"), alpha=4.0),
    Layout("ComfyUI lora_down/up without alpha", "diffusion_model.", ("lora_down", "lora_up")),
    Layout("lightx2v: diff_b applied, .diff / norm / diff_m counted", "diffusion_model.", ("lora_down", "lora_up"),
           alpha=2.0, diff_b=True, extras=4),
    Layout("kohya with alpha", "lora_unet_", ("lora_down", "lora_up"), alpha=1.0),
    Layout("kohya without alpha", "lora_unet_", ("lora_down", "lora_up"), loaded_by="renamed keys"),
    Layout("kohya attention only", "lora_unet_", ("lora_down", "lora_up"), alpha=1.0, modules=ATTENTION,
           loaded_by="renamed keys"),
    Layout("original Wan names without a prefix", "", loaded_by="renamed keys"),
]  # fmt: skip


def _write(layout: Layout, factors, tmp_path) -> str:
    tensors = {}
    for (block, module), (a, b, bias) in factors.items():
        tensors[layout.key(block, module, f"{layout.down_up[0]}.weight")] = a
        tensors[layout.key(block, module, f"{layout.down_up[1]}.weight")] = b
        if layout.alpha is not None:
            tensors[layout.key(block, module, "alpha")] = torch.tensor(layout.alpha)
        if layout.diff_b:
            tensors[layout.key(block, module, "diff_b")] = bias
    if layout.extras:
        tensors["diffusion_model.blocks.0.self_attn.q.diff"] = torch.full((32, 32), 0.5)  # a full-weight delta
        tensors["diffusion_model.blocks.0.norm3.diff"] = torch.ones(32)
        tensors["diffusion_model.blocks.0.self_attn.norm_q.diff"] = torch.ones(32)
        tensors["diffusion_model.blocks.1.diff_m"] = torch.ones(1, 6, 32)
    path = tmp_path / "style.safetensors"
    if layout.metadata_alpha is not None:
        from diffusers import WanPipeline
        from peft import LoraConfig

        config = LoraConfig(r=RANK, lora_alpha=layout.metadata_alpha, target_modules=sorted(set(WAN_TO_DIFFUSERS.values())))
        WanPipeline.save_lora_weights(
            tmp_path, transformer_lora_layers={k.removeprefix("transformer."): v for k, v in tensors.items()},
            transformer_lora_adapter_metadata=config.to_dict(), weight_name=path.name,
        )  # fmt: skip
    else:
        save_file(tensors, str(path))
    return str(path)


def _hand_merged(transformer, layout: Layout, factors) -> dict[str, torch.Tensor]:
    """Every block linear's weight and bias after the hand merge."""
    want = {}
    for name, module in transformer.named_modules():
        if isinstance(module, torch.nn.Linear) and name.startswith("blocks."):
            want[name + ".weight"] = module.weight.detach().clone()
            if module.bias is not None:
                want[name + ".bias"] = module.bias.detach().clone()
    for (block, module), (a, b, bias) in factors.items():
        name = f"blocks.{block}.{WAN_TO_DIFFUSERS[module]}"
        want[name + ".weight"] += layout.scale() * (b @ a)
        if layout.diff_b:
            want[name + ".bias"] += STRENGTH * bias
    return want


def _merged(transformer) -> dict[str, torch.Tensor]:
    fuse_active_adapters(transformer)
    got = {}
    for name in list(_hand_merged_names(transformer)):
        got[name] = transformer.get_parameter(name).detach()
    return got


def _hand_merged_names(transformer):
    for name, module in transformer.named_modules():
        if isinstance(module, torch.nn.Linear) and name.startswith("blocks.") and ".lora_" not in name:
            yield name + ".weight"
            if module.bias is not None:
                yield name + ".bias"


@pytest.mark.parametrize("layout", LAYOUTS, ids=[layout.name for layout in LAYOUTS])
def test_every_layout_loads_exactly(layout, tmp_path, experts):
    high, low = experts
    factors = _factors(high, layout.modules)
    want = _hand_merged(high, layout, factors)
    path = _write(layout, factors, tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = load_style_lora(_pipe(high, low), path, STRENGTH, experts="high")
    got = {name.replace(".base_layer", ""): value for name, value in _merged(high).items()}
    assert set(got) == set(want)
    for name, value in want.items():
        torch.testing.assert_close(got[name], value, atol=1e-5, rtol=0, msg=f"{layout.name}: {name}")
    assert report["loaded_by"] == layout.loaded_by
    assert report["dropped_keys"] == layout.extras and report["applied_keys"] == report["keys"] - layout.extras
    not_applied = [w for w in caught if "not applied" in str(w.message)]
    assert len(not_applied) == (1 if layout.extras else 0)
    if layout.extras:
        message = str(not_applied[0].message)
        assert path in message and ".diff (a full-weight delta" in message and "diff_m" in message


def _refused(tmp_path, tensors, match):
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(LoraError, match=match) as err:
        inspect_style_lora(path)
    assert str(path) in err.value.message
    return err.value


def test_what_is_refused_and_why(tmp_path):
    a, b = torch.zeros(RANK, 32), torch.zeros(32, RANK)
    storymem = _refused(tmp_path, {"base_model.model.blocks.0.self_attn.q.lora_A.weight": a,
                                   "base_model.model.blocks.0.self_attn.q.lora_B.weight": b}, "is a StoryMem LoRA")  # fmt: skip
    assert "--lora" in storymem.hint
    _refused(tmp_path, {"diffusion_model.blocks.0.self_attn.q.diff": torch.zeros(32, 32),
                        "diffusion_model.blocks.0.self_attn.q.lora_A.weight": a,
                        "diffusion_model.blocks.0.self_attn.q.lora_B.weight": b}, "would not be applied")  # fmt: skip
    _refused(tmp_path, {"unet.down.0.lora_A.weight": a}, "no LoRA layout storymem knows")
    _refused(tmp_path, {"transformer.blocks.0.attn1.to_q.lora_A.weight": a,
                        "diffusion_model.blocks.0.self_attn.q.lora_B.weight": b}, "mixes key layouts")  # fmt: skip
    _refused(tmp_path, {"diffusion_model.blocks.0.norm3.diff": torch.zeros(32)}, "nothing in it can be applied")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(LoraError, match="not a readable .safetensors file"):
        inspect_style_lora(garbage)
