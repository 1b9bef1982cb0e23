"""A Lightning-style 4-step render through the CLI (one LoRA file per pair and expert, Euler, shift 5,
guidance 1): each file lands on its own pair and expert only, checked on the weights; and every
--style-lora argument is refused before any model loads, naming the culprit."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.models.story_model import StoryModel

RANK = 2
ALPHA = 4.0  # Lightning's files carry an alpha per layer
TARGETS = {("t2v", "high"): 1, ("t2v", "low"): 2, ("m2v", "high"): 3, ("m2v", "low"): 4}  # -> seed
runner = CliRunner()


def _story(tmp_path):
    script = tmp_path / "story.json"
    script.write_text(json.dumps({"story_name": "Fast", "scenes": [
        {"scene_num": 1, "video_prompts": ["a boat on a lake", "the boat at the pier"], "cut": [True, True]}]}))  # fmt: skip
    return script


def _lora(seed: int, dim: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.randn(RANK, dim, generator=gen) * 0.3,
        "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.randn(dim, RANK, generator=gen) * 0.3,
        "diffusion_model.blocks.0.self_attn.q.alpha": torch.tensor(ALPHA),
    }


def test_each_lightning_file_goes_to_its_own_pair_and_expert(tmp_path, monkeypatch):
    built: dict[str, tuple[StoryModel, object]] = {}
    build = StoryModel._build

    def record(self, kind):
        pipe = build(self, kind)
        built[kind] = (self, pipe)
        return pipe

    monkeypatch.setattr(StoryModel, "_build", record)
    dim = 24  # the tiny experts' width
    args = []
    for (pair, expert), seed in TARGETS.items():
        path = tmp_path / f"{pair}_{expert}.safetensors"
        save_file(_lora(seed, dim), str(path))
        args += ["--style-lora", f"{pair}:{expert}={path}"]
    run = tmp_path / "run"
    result = runner.invoke(app, ["render", str(_story(tmp_path)), "-o", str(run), "--model", "tiny", "--device", "cpu",
                                 "--frames", "5", "--steps", "4", "--guidance", "1", "--scheduler", "euler",
                                 "--flow-shift", "5", *args])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert set(built) == {"t2v", "m2v"}
    for kind, (model, pipe) in built.items():
        base = model._load_pair(kind)
        for expert, transformer, fresh in (("high", pipe.transformer, base[0]), ("low", pipe.transformer_2, base[1])):
            assert set(transformer.peft_config) == {f"style_{kind}_{expert}"}, (kind, expert)
            lora = _lora(TARGETS[kind, expert], dim)
            delta = ALPHA / RANK * lora["diffusion_model.blocks.0.self_attn.q.lora_up.weight"] @ lora[
                "diffusion_model.blocks.0.self_attn.q.lora_down.weight"]  # fmt: skip
            layer = transformer.blocks[0].attn1.to_q
            assert layer.merged  # fused once, at load
            torch.testing.assert_close(layer.base_layer.weight, fresh.blocks[0].attn1.to_q.weight + delta, atol=1e-5, rtol=0)
            torch.testing.assert_close(transformer.blocks[1].attn1.to_q.base_layer.weight if hasattr(
                transformer.blocks[1].attn1.to_q, "base_layer") else transformer.blocks[1].attn1.to_q.weight,
                fresh.blocks[1].attn1.to_q.weight, atol=0, rtol=0)  # fmt: skip

    record_json = json.loads((run / "run.json").read_text())
    settings, described = record_json["settings"], record_json["model"]
    assert settings["scheduler"] == "euler" and settings["flow_shift_t2v"] == settings["flow_shift_m2v"] == 5.0
    assert described["sampling"] == {kind: {"scheduler": "euler", "flow_shift": 5.0, "steps": 4} for kind in ("t2v", "m2v")}
    styles = described["style_loras"]
    assert [(s["pair"], s["expert"]) for s in styles] == list(TARGETS)
    for style in styles:  # loaded on its own pair only, every key applied
        assert set(style["loaded"]) == {style["pair"]}
        assert style["loaded"][style["pair"]]["dropped_keys"] == 0


def test_euler_at_shift_5_samples_lightnings_sigmas():
    from storymem_cli.pipeline.scheduler import make_scheduler

    scheduler = make_scheduler({"num_train_timesteps": 1000}, 5.0, scheduler="euler")
    scheduler.set_timesteps(4)
    torch.testing.assert_close(scheduler.sigmas, torch.tensor([1.0, 0.9375, 5 / 6, 0.625, 0.0]))


@pytest.mark.parametrize(
    "argument, message",
    [
        ("mid={lora}", "'mid' before '=' is not a pair or expert"),
        ("t2v:middle={lora}", "'t2v:middle' before '=' is not a pair or expert"),
        ("{lora}:abc", "the strength after ':' must be a number, got 'abc'"),
        ("{lora}:nan", "the strength must be a finite number"),
        ("{missing}", "no such file"),
        ("{folder}", "is a folder, not a LoRA file"),
        ("{garbage}", "not a readable .safetensors file"),
        ("{storymem}", "is a StoryMem LoRA"),
    ],
)
def test_style_lora_arguments_are_refused_before_the_model_loads(tmp_path, monkeypatch, argument, message):
    monkeypatch.setattr(StoryModel, "__init__", lambda *a, **k: pytest.fail("the model started loading"))
    lora = tmp_path / "lora.safetensors"
    save_file(_lora(1, 32), str(lora))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 20)
    storymem = tmp_path / "backbone_high_noise.safetensors"
    save_file({"base_model.model.blocks.0.self_attn.q.lora_A.weight": torch.zeros(2, 32)}, str(storymem))
    (tmp_path / "folder.safetensors").mkdir()
    text = argument.format(lora=lora, missing=tmp_path / "missing.safetensors", folder=tmp_path / "folder.safetensors",
                           garbage=garbage, storymem=storymem)  # fmt: skip
    result = runner.invoke(app, ["render", str(_story(tmp_path)), "-o", str(tmp_path / "run"), "--model", "tiny",
                                 "--device", "cpu", "--style-lora", text])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "run").exists()
