"""Presets, model folders, and what happens when weights are missing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from storymem_cli.errors import InvalidInputError, MissingWeightsError
from storymem_cli.models.presets import A14B, TINY, TOY, WAN_I2V_REPO
from storymem_cli.models.registry import (
    ModelOptions,
    RuntimeOptions,
    load_story_model,
    resolve_preset,
)


def test_named_presets():
    assert resolve_preset("tiny") is TINY
    assert resolve_preset("wan2.2-a14b") is A14B
    assert "random weights" in TINY.description and "test" in TINY.description
    assert (TINY.memory.embedder, TINY.memory.aesthetic) == ("tiny", "none")
    assert (A14B.memory.embedder, A14B.memory.aesthetic) == ("clip-vit-b-32", "hpsv3")
    assert (A14B.video.width, A14B.video.height, A14B.video.frames, A14B.steps) == (832, 480, 81, 40)
    assert (A14B.t2v.flow_shift, A14B.t2v.boundary_ratio, A14B.m2v.flow_shift, A14B.m2v.boundary_ratio) == (
        12.0, 0.875, 4.0, 0.9,
    )  # fmt: skip


def test_auto_follows_the_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_preset("auto") is TOY  # the trained toy model: the tiny one only renders noise
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_preset("auto") is A14B


def test_unknown_model_is_invalid_input(tmp_path):
    with pytest.raises(InvalidInputError, match="unknown model 'nope'"):
        resolve_preset("nope")
    with pytest.raises(InvalidInputError, match="is not a model folder"):
        resolve_preset(str(tmp_path))


def test_a14b_layout_folder(tmp_path):
    (tmp_path / "i2v").mkdir()
    (tmp_path / "t2v").mkdir()
    preset = resolve_preset(str(tmp_path))
    assert preset.name == "wan2.2-a14b"
    assert preset.i2v_source == str(tmp_path / "i2v") and preset.t2v_source == str(tmp_path / "t2v")


def test_missing_hub_weights_say_what_to_download(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError) as err:
        load_story_model(A14B, RuntimeOptions(device="cpu"))
    text = str(err.value)
    assert WAN_I2V_REPO in text and f"hf download {WAN_I2V_REPO}" in text and "storymem download" in text
    assert "huggingface-cli" not in text  # gone with huggingface_hub 1.x


def test_missing_shard_in_a_local_folder_is_named(tmp_path):
    from storymem_cli.models.tiny import save_tiny_model

    folder = save_tiny_model(tmp_path / "m")
    weights = folder / "i2v" / "transformer_2" / "diffusion_pytorch_model.safetensors"
    weights.unlink()
    with pytest.raises(MissingWeightsError, match="transformer_2"):
        load_story_model(resolve_preset(str(folder)), RuntimeOptions(device="cpu"))


def test_index_shards_are_checked(tmp_path):
    from storymem_cli.models.weights import Component, check_components

    sub = tmp_path / "transformer"
    sub.mkdir()
    (sub / "config.json").write_text("{}")
    (sub / "diffusion_pytorch_model-00001-of-00002.safetensors").write_bytes(b"")
    index = {"weight_map": {"a": "diffusion_pytorch_model-00001-of-00002.safetensors",
                            "b": "diffusion_pytorch_model-00002-of-00002.safetensors"}}  # fmt: skip
    (sub / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(MissingWeightsError, match="00002-of-00002") as err:
        check_components(tmp_path, (Component("transformer", "config.json"),), "org/repo")
    assert 'hf download org/repo --include "transformer/*"' in str(err.value)


def test_light_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import storymem_cli.models.registry, storymem_cli.models.presets, storymem_cli.pipeline.request\n"
        "from storymem_cli.models.registry import resolve_preset\n"
        "resolve_preset('tiny')\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_storymem_lora_says_what_to_download(tmp_path, monkeypatch):
    """A14B layout folder with both Wan repos present (tiny stand-ins) but no LoRA anywhere."""
    from huggingface_hub import constants

    from storymem_cli.models.tiny import tiny_model_dir

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for sub in ("i2v", "t2v"):
        (tmp_path / sub).symlink_to(tiny_model_dir() / sub)
    preset = resolve_preset(str(tmp_path))
    with pytest.raises(MissingWeightsError, match="Kevin-thu/StoryMem") as err:
        load_story_model(preset, ModelOptions(device="cpu", continuation="mm2v"))
    assert "hf download Kevin-thu/StoryMem" in str(err.value)
