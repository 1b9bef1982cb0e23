"""One shot end to end on the tiny model: the contract the renderer relies on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from storymem_cli.config import WAN_DEFAULT_NEGATIVE_PROMPT
from storymem_cli.pipeline.request import ShotRequest


def request(tiny_model, **kw):
    video = tiny_model.preset.video
    base = {"mode": "m2v", "prompt": "a red fox in the snow", "width": video.width, "height": video.height,
                "frames": video.frames, "steps": tiny_model.preset.steps, "seed": 7}  # fmt: skip
    return ShotRequest(**{**base, **kw})


def test_m2v_with_three_memory_images(tiny_model, images):
    calls = []
    req = request(tiny_model, memory=images(3, (37, 61)))
    frames = tiny_model.generate(req, progress=lambda step, total: calls.append((step, total)))
    assert frames.dtype == np.uint8
    assert frames.shape == (req.frames, req.height, req.width, 3)
    assert calls == [(i, req.steps) for i in range(1, req.steps + 1)]
    again = tiny_model.generate(req)
    assert np.array_equal(frames, again)
    other = tiny_model.generate(request(tiny_model, memory=req.memory, seed=8))
    assert not np.array_equal(frames, other)


@pytest.mark.parametrize("mode, known", [("mi2v", 1), ("mm2v", 5)])
def test_continuation_modes(tiny_model, images, mode, known):
    req = request(tiny_model, mode=mode, memory=images(2), first_frames=images(known, (48, 64)), frames=13)
    frames = tiny_model.generate(req)
    assert frames.shape == (13, 48, 64, 3)


def test_t2v_first_shot(tiny_model):
    frames = tiny_model.generate(request(tiny_model, mode="t2v"))
    assert frames.shape == (9, 48, 64, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, tiny_model.generate(request(tiny_model, mode="t2v")))


def test_default_negative_prompt_is_wans(tiny_model, monkeypatch):
    pipe = tiny_model.pipeline("m2v")
    seen = {}
    original = pipe.encode_prompt

    def spy(**kwargs):
        seen.update(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(pipe, "encode_prompt", spy)
    tiny_model.generate(request(tiny_model))
    # encoded once per process and passed in; the same tensor the pipeline computes from the text
    with torch.no_grad():
        wans = original(prompt="x", negative_prompt=WAN_DEFAULT_NEGATIVE_PROMPT, max_sequence_length=512,
                        device=torch.device("cpu"))[1]  # fmt: skip
    assert torch.equal(seen["negative_prompt_embeds"], wans)
    assert not seen["negative_prompt_embeds"].requires_grad


def test_what_every_shot_shares_is_encoded_once_and_the_frames_stay_the_same(images):
    """The negative prompt, the all-zero condition video of M2V shots and an unchanged memory set are
    encoded once per process; a model that encodes them afresh renders the same frames, bit for bit."""
    from storymem_cli.models.registry import (
        RuntimeOptions,
        load_story_model,
        resolve_preset,
    )

    cached = load_story_model(resolve_preset("tiny"), RuntimeOptions(device="cpu"))
    memory = images(3)
    first = request(cached, memory=memory)
    cached.generate(first)
    pipe = cached.pipeline("m2v")
    counts = {"vae": 0, "text": 0}
    vae_encode, text_forward = pipe.vae.encode, pipe.text_encoder.forward

    def count(name, call):
        def counted(*args, **kwargs):
            counts[name] += 1
            return call(*args, **kwargs)

        return counted

    pipe.vae.encode, pipe.text_encoder.forward = count("vae", vae_encode), count("text", text_forward)
    second = request(cached, memory=memory, prompt="a grey wolf in the snow", seed=9)
    frames = cached.generate(second)
    assert counts == {"vae": 0, "text": 1}  # only the new prompt
    fresh = load_story_model(resolve_preset("tiny"), RuntimeOptions(device="cpu"))
    assert np.array_equal(frames, fresh.generate(second))


def test_memory_changes_the_shot(tiny_model, images):
    without = tiny_model.generate(request(tiny_model))
    with_memory = tiny_model.generate(request(tiny_model, memory=images(2)))
    assert not np.array_equal(without, with_memory)


def test_check_inputs_names_the_argument(m2v_pipe):
    with pytest.raises(ValueError, match="num_frames"):
        m2v_pipe(prompt="x", height=48, width=64, num_frames=8, num_inference_steps=1)
    with pytest.raises(ValueError, match="first_frames"):
        m2v_pipe(prompt="x", height=48, width=64, num_frames=9, num_inference_steps=1,
                 first_frames=[np.zeros((48, 64, 3), np.uint8)] * 2)  # fmt: skip
    with pytest.raises(ValueError, match="memory_images\\[0\\]"):
        m2v_pipe(prompt="x", height=48, width=64, num_frames=9, memory_images=[np.zeros((4, 4), np.uint8)])
    with pytest.raises(ValueError, match="height"):
        m2v_pipe(prompt="x", height=40, width=64, num_frames=9)
    with pytest.raises(ValueError, match="latents"):
        m2v_pipe(prompt="x", height=48, width=64, num_frames=9, latents=torch.zeros(1, 16, 2, 6, 8))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"mode": "mi2v"}, "needs 1 first_frames"),
        ({"mode": "t2v", "memory": [np.zeros((8, 8, 3), np.uint8)]}, "takes no memory"),
        ({"frames": 10}, "4k\\+1"),
        ({"width": 70}, "multiple of 16"),
        ({"memory": [np.zeros((8, 8, 3), np.float32)]}, "memory\\[0\\]"),
        ({"boundary_ratio": 1.5}, "boundary_ratio"),
    ],
)
def test_request_validation(tiny_model, overrides, message):
    with pytest.raises(ValidationError, match=message):
        request(tiny_model, **overrides)


def test_long_prompt_warns(tiny_model):
    with pytest.warns(UserWarning, match="text encoder reads the first 512"):
        tiny_model.generate(request(tiny_model, prompt="fox " * 200, steps=1))


def test_pipeline_loads_with_from_pretrained(images):
    """The subclass keeps diffusers' loading: a saved I2V repo opens as an M2V pipeline."""
    from storymem_cli.models.tiny import tiny_model_dir
    from storymem_cli.pipeline.m2v import StoryMemM2VPipeline

    pipe = StoryMemM2VPipeline.from_pretrained(tiny_model_dir() / "i2v")
    pipe.set_progress_bar_config(disable=True)
    out = pipe(prompt="x", memory_images=images(2), height=48, width=64, num_frames=5, num_inference_steps=2,
               generator=torch.Generator().manual_seed(0)).frames  # fmt: skip
    assert out.shape == (1, 5, 48, 64, 3)


@pytest.mark.parametrize("mode", ["t2v", "m2v"])
@pytest.mark.parametrize("high, low", [(3.5, 1.0), (1.0, 3.5)])
def test_guidance_1_skips_the_unconditional_pass_of_that_expert(tiny_model, images, mode, high, low):
    """A step-distilled LoRA runs with guidance 1: its expert must not compute an unconditional
    prediction only to cancel it out (the stock T2V pipeline did, for the low-noise expert)."""
    pipe = tiny_model.pipeline(mode)
    calls = {"transformer": 0, "transformer_2": 0}
    hooks = [getattr(pipe, name).register_forward_pre_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
             for name in calls]  # fmt: skip
    req = request(tiny_model, mode=mode, steps=8, guidance_high=high, guidance_low=low,
                  memory=images(2) if mode == "m2v" else [])  # fmt: skip
    try:
        tiny_model.generate(req)
    finally:
        for hook in hooks:
            hook.remove()
    sampling = tiny_model.sampling_for(req)
    from storymem_cli.pipeline.sigmas import NUM_TRAIN_TIMESTEPS, expert_for_timestep

    steps = [expert_for_timestep(float(t), sampling.boundary_ratio, NUM_TRAIN_TIMESTEPS) for t in pipe.scheduler.timesteps]
    want_high = steps.count("high") * (2 if high > 1 else 1)
    want_low = steps.count("low") * (2 if low > 1 else 1)
    assert steps.count("high") and steps.count("low")  # both experts take part
    assert calls == {"transformer": want_high, "transformer_2": want_low}
