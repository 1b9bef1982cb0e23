"""`storymem train` end to end on the tiny model: learning, LoRA round trip, scratch model, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.models.runtime import RuntimeOptions
from storymem_cli.train.config import TrainConfig
from storymem_cli.train.loop import Trainer

CPU = RuntimeOptions(device="cpu")  # the tests build their inputs on the CPU

runner = CliRunner()


def test_loss_falls_on_an_overfit_batch(overfit_dataset, tmp_path, small_lora):
    cfg = TrainConfig(dataset=overfit_dataset, output=tmp_path / "run", max_steps=30, lr=1e-2, caption_dropout=0.0,
                      **{**small_lora, "lora_rank": 8, "lora_alpha": 8.0, "checkpoint_every": 100})  # fmt: skip
    trainer = Trainer(cfg)
    before = trainer.fixed_loss()
    summary = trainer.run()
    after = trainer.fixed_loss()
    assert summary["step"] == 30 and summary["stopped"] == "max_steps"
    assert after < 0.85 * before, f"fixed-batch loss {before:.4f} -> {after:.4f}"  # measured: 1.52 -> 1.16


def _forward(transformer, seed=0):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(1, 36, 4, 6, 8, generator=gen)
    text = torch.randn(1, 7, transformer.config.text_dim, generator=gen)
    with torch.no_grad():
        return transformer(hidden_states=hidden, timestep=torch.tensor([700.0]), encoder_hidden_states=text,
                           return_dict=False)[0]  # fmt: skip


def test_trained_lora_round_trips_through_the_loader(toy_dataset, tmp_path, small_lora, tiny_request):
    """Issue 7 acceptance: same transformer outputs before saving and after loading with our loader."""
    from storymem_cli.models.lora import load_storymem_lora
    from storymem_cli.models.registry import load_story_model, resolve_preset
    from storymem_cli.models.runtime import ModelOptions

    # alpha != rank: the loader must take the saved alpha, not its default (alpha = rank)
    cfg = TrainConfig(dataset=toy_dataset, output=tmp_path / "run", max_steps=6, lr=1e-2, **{**small_lora, "lora_alpha": 12.0})
    trainer = Trainer(cfg)
    summary = trainer.run()
    high_file = Path(summary["exported"]["transformer"])
    low_file = Path(summary["exported"]["transformer_2"])
    assert high_file.parent == tmp_path / "run" / "lora" / "Wan2.2-MI2V-A14B"
    trained = [trainer.trainee.routes["high"].eval(), trainer.trainee.routes["low"].eval()]  # eval: no dropout

    fresh = load_story_model(resolve_preset("tiny"), CPU).pipeline("m2v")
    base = [_forward(fresh.transformer), _forward(fresh.transformer_2)]
    report = load_storymem_lora(fresh.transformer, fresh.transformer_2, high_file, low_file)
    assert report["rank"] == 4 and report["tensors"]["transformer"] == 20 * len(fresh.transformer.blocks)
    assert (report["alpha"], report["alpha_source"]) == (12.0, "file metadata")
    for before_save, loaded, untouched in zip(trained, (fresh.transformer, fresh.transformer_2), base):
        out = _forward(loaded)
        assert torch.allclose(out, _forward(before_save), atol=1e-6, rtol=1e-5)
        assert not torch.allclose(out, untouched, atol=1e-4)  # the LoRA learned something

    model = load_story_model(resolve_preset("tiny"), ModelOptions(device="cpu", lora=tmp_path / "run" / "lora"))
    frames = model.generate(tiny_request(memory=[np.zeros((48, 64, 3), np.uint8)]))
    recorded = model.describe()["storymem_lora"]  # run.json's model.storymem_lora
    assert frames.shape == (9, 48, 64, 3) and (recorded["rank"], recorded["alpha"]) == (4, 12.0)
    assert recorded["alpha_source"] == "file metadata"


def test_lora_on_the_toy_model_trains_and_renders(toy_dataset, tmp_path, tiny_request):
    """`train --model toy` (the LoRA help names every preset) gives a LoRA that `render --lora` loads on toy."""
    from storymem_cli.models.presets import TOY
    from storymem_cli.models.registry import load_story_model, resolve_preset
    from storymem_cli.models.runtime import ModelOptions

    out = tmp_path / "toy-lora"
    result = runner.invoke(app, ["train", str(toy_dataset), "--out", str(out), "--model", "toy", "--max-steps", "2",
                                 "--lora-rank", "4", "--lora-alpha", "4", "--warmup-steps", "0", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    model = load_story_model(resolve_preset("toy"), ModelOptions(device="cpu", lora=out / "lora"))
    video = TOY.video
    frames = model.generate(tiny_request(width=video.width, height=video.height, frames=video.frames,
                                         memory=[np.zeros((video.height, video.width, 3), np.uint8)]))  # fmt: skip
    assert frames.shape == (video.frames, video.height, video.width, 3)
    assert model.describe()["storymem_lora"]["rank"] == 4  # loaded with the M2V model


def test_from_scratch_model_loads_and_renders(toy_dataset, tmp_path, tiny_request):
    from storymem_cli.models.registry import load_story_model, resolve_preset

    out = tmp_path / "scratch"
    result = runner.invoke(app, ["train", str(toy_dataset), "--out", str(out), "--from-scratch", "--model", "tiny",
                                 "--max-steps", "3", "--warmup-steps", "0", "--t2v-share", "0.5", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["exported"]["model"] == str(out / "model") and summary["step"] == 3

    preset = resolve_preset(str(out / "model"))
    assert preset.video.width == 64 and not preset.builtin and preset.name == "tiny-scratch"
    model = load_story_model(preset, CPU)
    tokenizer = model.shared["tokenizer"]
    assert len(tokenizer) == 3 + 44  # pad, eos, unk + the toy vocabulary
    assert tokenizer("the hero hops").input_ids == [tokenizer.convert_tokens_to_ids(w) for w in ("the", "hero", "hops")] + [1]
    shot = model.generate(tiny_request(mode="t2v", prompt="a red circle hops to the left on the beach"))
    memory_shot = model.generate(tiny_request(prompt="the hero jumps up in the snow", memory=[shot[0], shot[-1]]))
    assert shot.shape == memory_shot.shape == (9, 48, 64, 3)

    # the exported transformers are the trained ones (both experts share one set of weights)
    from safetensors.torch import load_file

    weights = load_file(str(out / "checkpoints" / "step-00000003" / "weights.safetensors"))
    exported = load_file(str(out / "model" / "i2v" / "transformer_2" / "diffusion_pytorch_model.safetensors"))
    assert torch.equal(weights["i2v.proj_out.weight"], exported["proj_out.weight"])


def _weights(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    pointer = json.loads((out / "checkpoints" / "latest.json").read_text())
    return load_file(str(out / "checkpoints" / pointer["dir"] / "weights.safetensors"))


def _args(dataset: Path, out: Path, steps: int) -> list[str]:
    # --device cpu: bit-exact resume is a CPU promise (GPU kernels may reduce in another order)
    return [str(dataset), "--out", str(out), "--model", "tiny", "--max-steps", str(steps), "--lora-rank", "4",
            "--lora-alpha", "4", "--lr", "1e-2", "--warmup-steps", "2", "--checkpoint-every", "3", "--seed", "5",
            "--device", "cpu"]  # fmt: skip


@pytest.mark.timeout(1800)  # against a hang only: the test waits on events, so a loaded machine is just slower
def test_resume_after_kill_is_bit_exact(toy_dataset, tmp_path, child_env, wait_for_line):
    steps = 20  # the kill comes after step 6: 14 steps of margin, and the resumed run still crosses checkpoints
    killed = tmp_path / "killed"
    env = child_env(OMP_NUM_THREADS="1")
    args = [*_args(toy_dataset, killed, steps), "--log-every", "3"]
    proc = subprocess.Popen([sys.executable, "-m", "storymem_cli", "train", *args],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    pointer = killed / "checkpoints" / "latest.json"
    try:
        # Step 6's line comes after step 3's checkpoint (every 3 steps, saved after the step's line).
        wait_for_line(proc, f"step 6/{steps} ")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    at_kill = json.loads(pointer.read_text())["step"]
    assert 0 < at_kill < steps

    result = runner.invoke(app, ["train", *_args(toy_dataset, killed, steps), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["start_step"] >= at_kill and summary["resumed_from"] and summary["step"] == steps

    straight = tmp_path / "straight"
    assert runner.invoke(app, ["train", *_args(toy_dataset, straight, steps)]).exit_code == 0
    a, b = _weights(killed), _weights(straight)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.timeout(1800)  # against a hang only: the test waits on events, so a loaded machine is just slower
def test_sigterm_stops_with_a_checkpoint_and_the_latent_cache(toy_dataset, tmp_path, child_env, wait_for_line):
    """`kill` (SIGTERM) acts like Ctrl-C: the step it stopped at is checkpointed, the warm latent cache
    is saved, and the exit code is 130. A job started with `&` from a script ignores SIGINT."""
    out = tmp_path / "run"
    env = child_env(OMP_NUM_THREADS="1")
    args = [str(toy_dataset), "--out", str(out), "--model", "tiny", "--max-steps", "100000", "--lora-rank", "4",
            "--lora-alpha", "4", "--checkpoint-every", "100000", "--seed", "5", "--log-every", "2"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "storymem_cli", "train", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        seen = wait_for_line(proc, "step 2/")  # the first progress line: steps are being taken
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate()
        err = "".join(seen) + rest
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    step = json.loads((out / "checkpoints" / "latest.json").read_text())["step"]
    assert step >= 2  # never a periodic checkpoint (every 100000): this one is the SIGTERM's
    assert f"interrupted at step {step}" in err and "run the same command to resume" in err
    assert (out / "latent_cache.pt").is_file()


def test_resume_refuses_changed_settings(toy_dataset, tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, ["train", *_args(toy_dataset, out, 2)]).exit_code == 0
    result = runner.invoke(app, ["train", *_args(toy_dataset, out, 4), "--lora-rank", "8"])
    assert result.exit_code == 2
    assert "lora_rank: 4 -> 8" in result.output and "new --out" in result.output
    more = runner.invoke(app, ["train", *_args(toy_dataset, out, 4), "--json"])  # more steps: a new stage
    assert more.exit_code == 0, more.output
    assert json.loads(more.stdout)["start_step"] == 2


def test_time_limit_stops_cleanly(toy_dataset, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", *_args(toy_dataset, out, 10_000), "--time-limit", "0.001", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["stopped"] == "time_limit" and summary["step"] < 10_000
    assert Path(summary["checkpoint"]).is_dir() and Path(summary["exported"]["transformer"]).is_file()


def test_a_crash_while_saving_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    import storymem_cli.train.checkpoint as ck

    ck.save_checkpoint(tmp_path, 3, {"w": torch.ones(2)}, {"n": torch.tensor(1)}, {"loss": 1.0}, keep=2)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        ck.save_checkpoint(tmp_path, 6, {"w": torch.zeros(2)}, {"n": torch.tensor(2)}, {"loss": 0.5}, keep=2)
    latest = ck.latest_checkpoint(tmp_path)
    assert latest is not None and latest.name == "step-00000003"
    weights, _, state = ck.load_checkpoint(latest)
    assert torch.equal(weights["w"], torch.ones(2)) and state["step"] == 3
    monkeypatch.undo()
    for step in (6, 9):
        ck.save_checkpoint(tmp_path, step, {"w": torch.zeros(2)}, {"n": torch.tensor(2)}, {}, keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["latest.json", "step-00000006", "step-00000009"]  # pruned, stray temp folder removed


def test_invalid_settings_name_the_flag(toy_dataset, tmp_path):
    result = runner.invoke(app, ["train", str(toy_dataset), "--out", str(tmp_path / "x"), "--memory-min", "5",
                                 "--memory-max", "2"])  # fmt: skip
    assert result.exit_code == 2 and "memory_min (5) must not exceed memory_max (2)" in result.output
    result = runner.invoke(app, ["train", str(toy_dataset), "--out", str(tmp_path / "x"), "--experts", "middle"])
    assert result.exit_code == 2 and "--experts" in result.output
    result = runner.invoke(app, ["train", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "no dataset index" in result.output


def test_vae_stage_then_transformer_stage(overfit_dataset, tmp_path):
    """--stage vae learns to reconstruct and exports latent statistics; --vae puts it in the model."""
    vae_cfg = TrainConfig(dataset=overfit_dataset, output=tmp_path / "vae", mode="scratch", model="tiny", stage="vae",
                          frames=5, max_steps=25, lr=3e-3, warmup_steps=0, checkpoint_every=100)  # fmt: skip
    trainer = Trainer(vae_cfg)
    before = trainer.fixed_loss()
    summary = trainer.run()
    assert trainer.fixed_loss() < 0.85 * before  # measured: 0.53 -> 0.40
    vae_dir = Path(summary["exported"]["vae"])
    config = json.loads((vae_dir / "config.json").read_text())

    result = runner.invoke(app, ["train", str(overfit_dataset), "--out", str(tmp_path / "dit"), "--from-scratch",
                                 "--model", "tiny", "--vae", str(vae_dir), "--max-steps", "2", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    model_vae = json.loads((tmp_path / "dit" / "model" / "i2v" / "vae" / "config.json").read_text())
    assert model_vae["latents_mean"] == config["latents_mean"] and model_vae["latents_std"] == config["latents_std"]

    # the statistics normalise this VAE's latents to about zero mean, unit spread
    from storymem_cli.models.registry import load_story_model, resolve_preset
    from storymem_cli.toy.dataset import load_clip
    from storymem_cli.train.step import encode_video

    pipe = load_story_model(resolve_preset(str(tmp_path / "dit" / "model")), CPU).pipeline("m2v")
    clip = load_clip(next((overfit_dataset / "clips").iterdir()))
    with torch.no_grad():
        latents = encode_video(pipe, clip[:5], 48, 64, torch.device("cpu"))
    assert abs(float(latents.mean())) < 0.5 and 0.4 < float(latents.std()) < 2.5


def test_one_expert_at_a_time(toy_dataset, tmp_path, small_lora):
    """--experts high trains only the high-noise expert on sigmas >= the boundary; the other file is a no-op."""
    from safetensors.torch import load_file

    cfg = TrainConfig(dataset=toy_dataset, output=tmp_path / "run", max_steps=3, lr=1e-2, experts="high", **small_lora)
    trainer = Trainer(cfg)
    sigmas = []
    original = trainer._route

    def spy(rng, kind):
        model, (lo, hi) = original(rng, kind)
        sigmas.append((model, lo, hi))
        return model, (lo, hi)

    trainer._route = spy
    summary = trainer.run()
    assert {id(m) for m, _, _ in sigmas} == {id(trainer.trainee.routes["high"])}
    assert all(lo > 0.5 and hi == 1.0 for _, lo, hi in sigmas)
    high = load_file(summary["exported"]["transformer"])
    low = load_file(summary["exported"]["transformer_2"])
    assert any(t.abs().sum() > 0 for k, t in high.items() if ".lora_B." in k)
    assert all(not t.any() for k, t in low.items() if ".lora_B." in k)
    assert set(trainer.trainee.state()) == {k for k in trainer.trainee.state() if k.startswith("transformer.")}


def test_vae_decoder_only_keeps_the_latent_space(overfit_dataset, tmp_path):
    """--vae-decoder-only: the encoder (and so every latent a transformer trained on) stays bit for bit."""
    first = TrainConfig(dataset=overfit_dataset, output=tmp_path / "vae", mode="scratch", model="tiny", stage="vae",
                        frames=5, max_steps=3, warmup_steps=0, checkpoint_every=100)  # fmt: skip
    vae_dir = Path(Trainer(first).run()["exported"]["vae"])
    second = first.model_copy(update={"output": tmp_path / "dec", "vae": str(vae_dir), "vae_decoder_only": True,
                                      "max_steps": 3, "lr": 1e-2})  # fmt: skip
    tuned_dir = Path(Trainer(second).run()["exported"]["vae"])

    from diffusers import AutoencoderKLWan

    before, after = (AutoencoderKLWan.from_pretrained(d).state_dict() for d in (vae_dir, tuned_dir))
    encoder = [k for k in before if k.startswith(("encoder.", "quant_conv."))]
    decoder = [k for k in before if k.startswith(("decoder.", "post_quant_conv."))]
    assert encoder and all(torch.equal(before[k], after[k]) for k in encoder)
    assert any(not torch.equal(before[k], after[k]) for k in decoder)
    with pytest.raises(ValueError, match="vae_decoder_only"):
        TrainConfig(dataset=overfit_dataset, output=tmp_path / "x", mode="scratch", stage="vae", vae_decoder_only=True)


def test_inflated_vae_reconstructs_a_still_clip_like_its_frame(tmp_path):
    """--vae-inflate: single frames decode as before, and every frame of a still clip decodes like the
    frame alone (per-frame convolutions, averaging / copying temporal resamplers)."""
    from diffusers import AutoencoderKLWan

    from storymem_cli.models.tiny import TINY_VAE
    from storymem_cli.train.vae import inflate_temporal

    torch.manual_seed(0)
    vae = AutoencoderKLWan(**TINY_VAE).eval()
    frame = torch.rand(1, 3, 1, 32, 32) * 2 - 1
    still = frame.repeat(1, 1, 9, 1, 1)

    def recon(x):
        with torch.no_grad():
            return vae.decode(vae.encode(x).latent_dist.mode()).sample

    alone, still_before = recon(frame), recon(still)
    assert inflate_temporal(vae) > 0
    assert torch.allclose(recon(frame), alone, atol=1e-5)  # the spatial skill is untouched
    still_after = recon(still)
    assert torch.allclose(still_after, alone.expand_as(still_after), atol=1e-4)
    assert not torch.allclose(still_before, alone.expand_as(still_before), atol=1e-2)  # random taps before
    with pytest.raises(ValueError, match="vae_inflate"):
        TrainConfig(dataset=tmp_path, output=tmp_path / "x", mode="scratch", stage="vae", vae_inflate=True)


def test_init_starts_from_an_earlier_runs_model(toy_dataset, tmp_path):
    from safetensors.torch import load_file

    from storymem_cli.train.config import TrainConfig
    from storymem_cli.train.setup import build_trainee

    first = tmp_path / "first"
    result = runner.invoke(app, ["train", str(toy_dataset), "--out", str(first), "--from-scratch", "--model", "tiny",
                                 "--max-steps", "2", "--warmup-steps", "0", "--t2v-share", "0.5",
                                 "--train-text-encoder"])  # fmt: skip
    assert result.exit_code == 0, result.output
    model = first / "model"
    cfg = TrainConfig(dataset=toy_dataset, output=tmp_path / "second", mode="scratch", model="tiny", seed=7,
                      init=str(model), device="cpu")  # fmt: skip
    trainee = build_trainee(cfg)
    stored = {
        "i2v": (trainee.routes["m2v"], "i2v/transformer/diffusion_pytorch_model.safetensors"),
        "t2v": (trainee.routes["t2v"], "t2v/transformer/diffusion_pytorch_model.safetensors"),
        "text_encoder": (trainee.pipe.text_encoder, "i2v/text_encoder/model.safetensors"),
        "vae": (trainee.pipe.vae, "i2v/vae/diffusion_pytorch_model.safetensors"),
    }
    for name, (module, file) in stored.items():
        saved, ours = load_file(str(model / file)), module.state_dict()
        assert saved and all(torch.equal(ours[k].cpu(), v) for k, v in saved.items()), name
    fresh = build_trainee(cfg.model_copy(update={"init": None}))  # seed 7 alone draws other weights
    assert not torch.equal(fresh.routes["m2v"].proj_out.weight, trainee.routes["m2v"].proj_out.weight)

    more = runner.invoke(app, ["train", str(toy_dataset), "--out", str(tmp_path / "second"), "--from-scratch",
                               "--model", "tiny", "--init", str(model), "--max-steps", "1", "--json"])  # fmt: skip
    assert more.exit_code == 0, more.output
    assert json.loads((tmp_path / "second" / "train.json").read_text())["init"] == str(model)
    other_size = runner.invoke(app, ["train", str(toy_dataset), "--out", str(tmp_path / "third"), "--from-scratch",
                                     "--model", "toy", "--init", str(model), "--max-steps", "1"])  # fmt: skip
    assert other_size.exit_code == 2 and "does not fit the size given by --model" in other_size.stderr, other_size.output


def test_init_starts_with_the_earlier_runs_latent_cache(toy_dataset, tmp_path):
    """A stage started with --init reuses RUN/latent_cache.pt of the run its model came from."""
    flags = ["--from-scratch", "--model", "tiny", "--max-steps", "2", "--warmup-steps", "0", "--json"]
    first = runner.invoke(app, ["train", str(toy_dataset), "--out", str(tmp_path / "first"), *flags])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["latent_cache"]["misses"] > 0 and (tmp_path / "first" / "latent_cache.pt").is_file()
    # the same seed and flags draw the same samples, so every encode is one the first run cached
    second = runner.invoke(app, ["train", str(toy_dataset), "--out", str(tmp_path / "second"), *flags,
                                 "--init", str(tmp_path / "first" / "model")])  # fmt: skip
    assert second.exit_code == 0, second.output
    cache = json.loads(second.stdout)["latent_cache"]
    assert cache["loaded_from"] == str(tmp_path / "first" / "latent_cache.pt")
    assert cache["misses"] == 0 and cache["hits"] > 0
    # nothing new, but the second run keeps the cache beside its model, so a third stage starts warm too
    third = runner.invoke(app, ["train", str(toy_dataset), "--out", str(tmp_path / "third"), *flags,
                                "--init", str(tmp_path / "second" / "model")])  # fmt: skip
    assert third.exit_code == 0, third.output
    assert json.loads(third.stdout)["latent_cache"]["loaded_from"] == str(tmp_path / "second" / "latent_cache.pt")


def test_a_first_shot_stage_leaves_the_memory_model_as_it_was(toy_dataset, tmp_path):
    from safetensors.torch import load_file

    flags = ["--from-scratch", "--model", "tiny", "--max-steps", "3", "--warmup-steps", "0"]
    first = runner.invoke(app, ["train", str(toy_dataset), "--out", str(tmp_path / "first"), *flags])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["train", str(toy_dataset), "--out", str(tmp_path / "second"), *flags,
                                 "--init", str(tmp_path / "first" / "model"), "--t2v-share", "1"])  # fmt: skip
    assert second.exit_code == 0, second.output
    for sub, same in (("i2v/transformer", True), ("t2v/transformer", False)):
        file = f"{sub}/diffusion_pytorch_model.safetensors"
        before, after = load_file(str(tmp_path / "first" / "model" / file)), load_file(str(tmp_path / "second" / "model" / file))
        assert all(torch.equal(before[k], after[k]) for k in before) == same, sub


def test_widened_first_shot_model_computes_what_it_did_whatever_the_condition_holds():
    from diffusers import WanTransformer3DModel

    from storymem_cli.train.setup import widen_input

    torch.manual_seed(0)
    size = {"patch_size": (1, 2, 2), "num_attention_heads": 2, "attention_head_dim": 8, "ffn_dim": 32,
            "num_layers": 1, "text_dim": 16, "freq_dim": 16, "out_channels": 4, "rope_max_seq_len": 32}  # fmt: skip
    t2v = WanTransformer3DModel(in_channels=4, **size).eval()
    m2v = WanTransformer3DModel(in_channels=9, **size).eval()
    m2v.load_state_dict(widen_input(t2v.state_dict(), 9))
    latents, condition = torch.randn(1, 4, 2, 8, 8), torch.randn(1, 5, 2, 8, 8)
    inputs = {"timestep": torch.tensor([500]), "encoder_hidden_states": torch.randn(1, 3, 16), "return_dict": False}
    with torch.no_grad():
        expected = t2v(hidden_states=latents, **inputs)[0]
        got = m2v(hidden_states=torch.cat([latents, condition], dim=1), **inputs)[0]
    torch.testing.assert_close(got, expected)


def test_m2v_from_t2v_starts_the_memory_model_from_the_first_shot_model(toy_dataset, tmp_path):
    from storymem_cli.train.setup import build_trainee

    first = runner.invoke(app, ["train", str(toy_dataset), "--out", str(tmp_path / "first"), "--from-scratch",
                                "--model", "tiny", "--max-steps", "2", "--warmup-steps", "0"])  # fmt: skip
    assert first.exit_code == 0, first.output
    cfg = TrainConfig(dataset=toy_dataset, output=tmp_path / "second", mode="scratch", model="tiny",
                      init=str(tmp_path / "first" / "model"), m2v_from_t2v=True, device="cpu")  # fmt: skip
    trainee = build_trainee(cfg)
    m2v, t2v = trainee.routes["m2v"].state_dict(), trainee.routes["t2v"].state_dict()
    assert all(torch.equal(m2v[k], v) for k, v in t2v.items() if k != "patch_embedding.weight")
    wide, narrow = m2v["patch_embedding.weight"], t2v["patch_embedding.weight"]
    assert torch.equal(wide[:, : narrow.shape[1]], narrow) and not wide[:, narrow.shape[1] :].any()
    plain = build_trainee(cfg.model_copy(update={"m2v_from_t2v": False}))  # the memory model of the first run
    assert not torch.equal(plain.routes["m2v"].proj_out.weight, trainee.routes["m2v"].proj_out.weight)

    refused = runner.invoke(app, ["train", str(toy_dataset), "--out", str(tmp_path / "third"), "--from-scratch",
                                  "--model", "tiny", "--m2v-from-t2v", "--max-steps", "1"])  # fmt: skip
    assert refused.exit_code == 2 and "--m2v-from-t2v" in refused.stderr, refused.output


def test_init_refusals_name_the_flag(toy_dataset, tmp_path):
    cases = [
        (["--model", "tiny", "--init", str(tmp_path)], "--init"),  # a LoRA run
        (["--from-scratch", "--model", "tiny", "--init", str(tmp_path)], "not a model folder"),
        (["--from-scratch", "--stage", "vae", "--init", str(tmp_path)], "--init"),
    ]
    for args, needle in cases:
        result = runner.invoke(app, ["train", str(toy_dataset), "--out", str(tmp_path / "run"), *args, "--max-steps", "1"])
        assert result.exit_code == 2, (args, result.output)
        assert needle in result.stderr, (args, result.stderr)
