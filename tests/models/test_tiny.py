"""The tiny model: deterministic, saveable, loadable by path like a real model folder."""

from __future__ import annotations

import numpy as np
import torch

from storymem_cli.models.registry import (
    RuntimeOptions,
    load_story_model,
    resolve_preset,
)
from storymem_cli.models.tiny import (
    build_tiny_components,
    save_tiny_model,
    tiny_model_dir,
)


def test_components_are_deterministic_and_tiny():
    a, b = build_tiny_components(), build_tiny_components()
    for name in ("text_encoder", "vae", "t2v_transformer", "i2v_transformer_2"):
        sa, sb = a[name].state_dict(), b[name].state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["i2v_transformer"].config.in_channels == 36 and a["t2v_transformer"].config.in_channels == 16
    assert not torch.equal(a["i2v_transformer"].proj_out.weight, a["i2v_transformer_2"].proj_out.weight)
    total = sum(p.numel() for name in a if hasattr(a[name], "parameters") for p in a[name].parameters())
    assert total < 1_000_000


def test_tokenizer_handles_any_text():
    from storymem_cli.models.tiny import build_tokenizer

    ids = build_tokenizer()(["色调艳丽 a fox"], return_tensors="pt").input_ids[0]
    assert ids[-1].item() == 1 and (ids != 2).all()  # eos, no unknown tokens


def test_saved_folder_loads_by_path_and_matches_builtin(tmp_path, tiny_request):
    folder = save_tiny_model(tmp_path / "tiny-copy")
    preset = resolve_preset(str(folder))
    assert preset.name == "tiny" and not preset.builtin and preset.i2v_source == str(folder / "i2v")
    from_path = load_story_model(preset, RuntimeOptions(device="cpu"))
    builtin = load_story_model(resolve_preset("tiny"), RuntimeOptions(device="cpu"))
    req = tiny_request()
    assert np.array_equal(from_path.generate(req), builtin.generate(req))
    assert (tiny_model_dir() / "storymem_model.json").is_file()


def test_describe(tiny_request):
    model = load_story_model(resolve_preset("tiny"), RuntimeOptions(device="cpu"))
    model.generate(tiny_request(rope={"mode": "sequential", "shift": 5.0}))
    info = model.describe()
    assert info["preset"] == "tiny" and info["random_weights"] is True
    assert info["dtype"] == "float32" and info["vae_dtype"] == "float32" and info["device"] == "cpu"
    assert info["storymem_lora"] is None and info["style_loras"] == []
    assert info["rope"] == {"mode": "sequential", "shift": 5.0}
    assert info["i2v"]["path"].endswith("i2v")
