"""The toy preset: packed weights shipped with the package, materialised into a normal model folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from storymem_cli.errors import MissingWeightsError
from storymem_cli.models import toy
from storymem_cli.models.presets import TOY
from storymem_cli.train.scratch import SCRATCH_SIZES, build_scratch_components, export_model_dir, scratch_preset

MAX_WEIGHTS_BYTES = 25 * 2**20  # issue 7: the committed weights are at most 25 MB


def test_toy_preset_matches_the_toy_training_size():
    size = SCRATCH_SIZES["toy"]
    assert size.video == TOY.video and size.steps == TOY.steps and size.embedder == TOY.memory.embedder
    assert (TOY.video.width, TOY.video.height, TOY.video.frames) == (32, 32, 17)
    assert TOY.builtin and TOY.lora_source is None


def test_shipped_weights_are_small_and_complete():
    assert toy.toy_weights_present(), f"{toy.WEIGHTS_FILE} is package data and must be committed"
    assert toy.WEIGHTS_FILE.stat().st_size <= MAX_WEIGHTS_BYTES
    parts = toy.load_toy_parts()  # strict: every tensor of every part, nothing else
    assert parts["vae"].config.latents_mean is not None
    card = json.loads(toy.CARD_FILE.read_text())
    assert card["commands"] and card["steps"]  # how they were trained is written down


def test_pack_and_load_round_trip(tmp_path):
    parts = build_scratch_components(SCRATCH_SIZES["toy"], seed=5)
    parts["vae"].register_to_config(latents_mean=[0.1] * 16, latents_std=[2.0] * 16)
    model = export_model_dir(tmp_path / "model", parts, scratch_preset("toy", SCRATCH_SIZES["toy"]))
    packed = toy.pack_toy_weights(model, tmp_path / "toy.safetensors")
    loaded = toy.load_toy_parts(packed)
    for name in toy.PARTS:
        mine, theirs = parts[name].state_dict(), loaded[name].state_dict()
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), name
    assert loaded["vae"].config.latents_std == [2.0] * 16


def test_pack_takes_a_decoder_fine_tune_but_not_another_encoder(tmp_path):
    parts = build_scratch_components(SCRATCH_SIZES["toy"], seed=5)
    model = export_model_dir(tmp_path / "model", parts, scratch_preset("toy", SCRATCH_SIZES["toy"]))
    vae = parts["vae"]
    with torch.no_grad():
        vae.decoder.conv_out.bias.add_(1.0)  # a decoder change: fits
    vae.save_pretrained(tmp_path / "dec")
    loaded = toy.load_toy_parts(toy.pack_toy_weights(model, tmp_path / "a.safetensors", vae_dir=tmp_path / "dec"))
    assert torch.equal(loaded["vae"].decoder.conv_out.bias, vae.decoder.conv_out.bias)
    with torch.no_grad():
        vae.quant_conv.bias.add_(1.0)  # an encoder change: the transformers' latents would not fit
    vae.save_pretrained(tmp_path / "enc")
    with pytest.raises(MissingWeightsError, match="encoder is not the model's"):
        toy.pack_toy_weights(model, tmp_path / "b.safetensors", vae_dir=tmp_path / "enc")


def test_pack_refuses_a_model_of_another_size(tmp_path):
    size = SCRATCH_SIZES["tiny"]
    model = export_model_dir(tmp_path / "model", build_scratch_components(size, 0), scratch_preset("tiny", size))
    with pytest.raises(MissingWeightsError, match="not a toy-size model"):
        toy.pack_toy_weights(model, tmp_path / "toy.safetensors")


def test_missing_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(toy, "WEIGHTS_FILE", tmp_path / "absent.safetensors")
    with pytest.raises(MissingWeightsError, match="toy model's weights are missing"):
        toy.toy_model_dir()


def test_toy_model_renders_a_toy_story_through_the_cli(tmp_path, monkeypatch):
    """`--model toy` end to end with the shipped weights: materialised into the cache, then the same
    loader, pipeline, memory and renderer as every model (2 steps: this checks wiring, not quality)."""
    from typer.testing import CliRunner

    from storymem_cli.cli.app import app
    from storymem_cli.render.video import read_frames

    monkeypatch.setenv("STORYMEM_CACHE", str(tmp_path / "cache"))
    script = Path(__file__).parents[2] / "examples" / "toy_short.json"
    result = CliRunner().invoke(app, ["render", str(script), "-o", str(tmp_path / "run"), "--model", "toy",
                                      "--steps", "2", "--upscale", "2", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["model"]["preset"] == "toy" and record["model"]["random_weights"] is False
    assert record["settings"]["embedder"] == "pixels" and record["settings"]["video"]["width"] == 32
    assert read_frames(tmp_path / "run" / "story.mp4").shape[1:3] == (64, 64)  # 32x32, --upscale 2
    assert any((tmp_path / "cache").glob("toy-*/storymem_model.json"))
