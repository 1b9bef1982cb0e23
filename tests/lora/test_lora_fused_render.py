"""The model fuses the StoryMem LoRA and style LoRAs into both experts at load; fused equals unfused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from storymem_cli.models.lora_keys import LoraKey
from storymem_cli.models.presets import TINY
from storymem_cli.models.registry import load_story_model, resolve_preset
from storymem_cli.models.runtime import ModelOptions, RuntimeOptions
from storymem_cli.pipeline.request import ShotRequest

from .conftest import synthetic_lora


@pytest.fixture(scope="module")
def lora_files(tmp_path_factory) -> tuple[Path, Path]:
    """A random StoryMem LoRA for the tiny experts in the published layout (no alpha stored: alpha = rank
    4, scale 2), and a diffusers-format style LoRA."""
    root = tmp_path_factory.mktemp("loras")
    pipe = load_story_model(resolve_preset("tiny"), RuntimeOptions(device="cpu")).pipeline("m2v")
    variant = root / "storymem" / "Wan2.2-MI2V-A14B"
    variant.mkdir(parents=True)
    for seed, (stem, expert) in enumerate((("backbone_high_noise", pipe.transformer),
                                           ("backbone_low_noise", pipe.transformer_2))):  # fmt: skip
        save_file(synthetic_lora(expert, rank=4, seed=seed, std=0.11), str(variant / f"{stem}.safetensors"))
    gen = torch.Generator().manual_seed(9)
    style = {}
    for block in range(len(pipe.transformer.blocks)):
        for factor in "AB":
            key = LoraKey(block, "self_attn.q", factor)
            linear = pipe.transformer.get_submodule(key.diffusers_module)
            shape = (2, linear.in_features) if factor == "A" else (linear.out_features, 2)
            style[f"transformer.{key.peft_key}"] = torch.randn(shape, generator=gen) * 0.2
    save_file(style, str(root / "style.safetensors"))
    return root / "storymem", root / "style.safetensors"


def _model(lora_files, dtype: str, fuse: bool):
    storymem, style = lora_files
    runtime = ModelOptions(device="cpu", dtype=dtype, lora=storymem, style_loras=[(style, 0.8)], fuse_lora=fuse)
    return load_story_model(resolve_preset("tiny"), runtime)


def _forward(transformer: torch.nn.Module) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    dtype = transformer.patch_embedding.weight.dtype
    hidden = torch.randn(1, transformer.config.in_channels, 3, 6, 8, generator=gen).to(dtype)
    text = torch.randn(1, 7, transformer.config.text_dim, generator=gen).to(dtype)
    with torch.no_grad():
        return transformer(hidden_states=hidden, timestep=torch.tensor([700.0]), encoder_hidden_states=text,
                           return_dict=False)[0].float()  # fmt: skip


def test_loras_are_fused_into_both_experts_and_run_json_says_so(lora_files):
    model = _model(lora_files, "float32", fuse=True)
    pipe = model.pipeline("m2v")
    for transformer in (pipe.transformer, pipe.transformer_2):
        layer = transformer.blocks[0].attn1.to_q  # carries both the StoryMem and the style LoRA (high expert)
        assert layer.merged and "storymem" in layer.merged_adapters
    assert set(pipe.transformer.blocks[0].attn1.to_q.merged_adapters) == {"storymem", "style_style"}
    described = model.describe()
    assert described["storymem_lora"]["fused"] is True
    assert [style["fused"] for style in described["style_loras"]] == [True]
    t2v = model.pipeline("t2v").transformer.blocks[0].attn1.to_q  # no StoryMem LoRA there: the style LoRA alone
    assert t2v.merged and set(t2v.merged_adapters) == {"style_style"}
    unfused = _model(lora_files, "float32", fuse=False)
    unfused.pipeline("m2v")
    assert unfused.describe()["storymem_lora"]["fused"] is False
    assert not unfused.pipeline("m2v").transformer.blocks[0].attn1.to_q.merged


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-5), ("bfloat16", 2e-2)])
def test_fused_output_equals_unfused(lora_files, dtype, tolerance):
    """Fusing rounds W + s * B @ A once into the weight's dtype: equal to the unfused layers up to that
    rounding (bf16 keeps 8 bits of mantissa: relative error ~4e-3 per weight)."""
    fused = _model(lora_files, dtype, fuse=True).pipeline("m2v")
    unfused = _model(lora_files, dtype, fuse=False).pipeline("m2v")
    bare = load_story_model(resolve_preset("tiny"), RuntimeOptions(device="cpu", dtype=dtype)).pipeline("m2v")
    for name in ("transformer", "transformer_2"):
        a, b = _forward(getattr(fused, name)), _forward(getattr(unfused, name))
        scale = b.abs().max()
        assert (a - b).abs().max() <= tolerance * scale
        assert (_forward(getattr(bare, name)) - b).abs().max() > 0.1 * scale  # the LoRAs do matter


def test_fused_render_equals_unfused_render(lora_files):
    request = ShotRequest(mode="m2v", prompt="a lighthouse at dusk", width=TINY.video.width,
                          height=TINY.video.height, frames=TINY.video.frames, steps=2, seed=3,
                          memory=[np.full((TINY.video.height, TINY.video.width, 3), 90, np.uint8)])  # fmt: skip
    a = _model(lora_files, "float32", fuse=True).generate(request).astype(int)
    b = _model(lora_files, "float32", fuse=False).generate(request).astype(int)
    assert np.abs(a - b).max() <= 1  # float rounding may move a pixel by one level, nothing more


def test_run_json_of_a_lora_render_says_loaded_and_names_the_versions(lora_files, tmp_path):
    """Issue 23, item 13: after a render with --lora, run.json's model section says the LoRA was
    loaded (the M2V shot loaded it) and records the library versions behind the result."""
    import json
    from importlib.metadata import version

    from typer.testing import CliRunner

    from storymem_cli.cli.app import app

    script = tmp_path / "two.json"
    script.write_text(json.dumps({"story_name": "Two", "scenes": [
        {"scene_num": 1, "video_prompts": ["a boat on a lake", "the boat sails on"], "cut": [True, True]}]}))  # fmt: skip
    args = ["render", str(script), "-o", str(tmp_path / "run"), "--model", "tiny", "--frames", "5",
            "--device", "cpu", "--lora", str(lora_files[0])]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    model = json.loads((tmp_path / "run" / "run.json").read_text())["model"]
    assert model["storymem_lora"]["loaded"] is True and model["storymem_lora"]["fused"] is True
    versions = model["versions"]
    assert versions["torch"] == version("torch") and versions["diffusers"] == version("diffusers")
    assert versions["transformers"] == version("transformers") and versions["python"]


def test_a_style_lora_per_expert_through_the_cli(lora_files, tmp_path):
    """`--style-lora high=A --style-lora low=B` (Wan2.2 LoRAs shipped one file per expert, such as
    Lightning's): each file changes its own expert only, and run.json says which."""
    import json

    from typer.testing import CliRunner

    from storymem_cli.cli.app import app
    from storymem_cli.render.settings import StyleLora
    from storymem_cli.render.style_args import parse_style_lora

    _, style = lora_files
    assert parse_style_lora("high=a/b.safetensors:0.5") == StyleLora(path="a/b.safetensors", strength=0.5, expert="high")
    assert parse_style_lora("C:/x=y.safetensors") == StyleLora(path="C:/x=y.safetensors")  # '=' and ':' in a path
    plain = load_story_model(resolve_preset("tiny"), RuntimeOptions(device="cpu")).pipeline("m2v")
    high_only = load_story_model(resolve_preset("tiny"), ModelOptions(device="cpu", style_loras=[(style, 0.8, "high")]))
    pipe = high_only.pipeline("m2v")
    assert not torch.equal(_forward(pipe.transformer), _forward(plain.transformer))
    assert torch.equal(_forward(pipe.transformer_2), _forward(plain.transformer_2))

    script = tmp_path / "story.json"
    script.write_text(json.dumps({"story_name": "Split", "story_overview": "x", "scenes": [
        {"scene_num": 1, "video_prompts": ["a lighthouse at dusk"], "cut": [True]}]}))  # fmt: skip
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["render", str(script), "-o", str(run), "--model", "tiny", "--device", "cpu",
                                      "--steps", "2", "--style-lora", f"high={style}:0.8", "--style-lora", f"low={style}"])  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((run / "run.json").read_text())
    assert [(s["expert"], s["strength"]) for s in record["model"]["style_loras"]] == [("high", 0.8), ("low", 1.0)]
    assert [s["expert"] for s in record["settings"]["style_loras"]] == ["high", "low"]
