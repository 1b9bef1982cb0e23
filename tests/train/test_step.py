"""The loss's conventions, and that training sees exactly what inference builds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from storymem_cli.config import RopeConfig
from storymem_cli.models.runtime import RuntimeOptions
from storymem_cli.pipeline.layout import frame_positions
from storymem_cli.train.data import Sample
from storymem_cli.train.step import (
    EncodedBatch,
    TextCache,
    draw_sigmas,
    encode_batch,
    flow_loss,
    flow_pair,
    latent_chroma_weights,
    sigma_from_u,
    u_range,
)

CPU = RuntimeOptions(device="cpu")  # the tests build their inputs on the CPU


def test_flow_convention_matches_diffusers_schedulers():
    """x_t as FlowMatchEuler's scale_noise; v such that UniPC's flow_prediction recovers x0 = x_t - sigma * v."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 4, 3, 2, 2, generator=gen), torch.randn(2, 4, 3, 2, 2, generator=gen)
    sigma = torch.tensor([0.25, 0.8])
    x_t, v = flow_pair(x0, noise, sigma)
    sched = FlowMatchEulerDiscreteScheduler(shift=1.0)
    for i in range(2):
        sched.set_timesteps(sigmas=[float(sigma[i]), 0.0][:1])
        expected = sched.scale_noise(x0[i : i + 1], sched.timesteps[:1], noise[i : i + 1])
        assert torch.allclose(x_t[i : i + 1], expected, atol=1e-6)
        assert torch.allclose(x_t[i] - sigma[i] * v[i], x0[i], atol=1e-6)
        # one Euler step to sigma = 0 along the true velocity lands on x0
        assert torch.allclose(x_t[i] + (0.0 - sigma[i]) * v[i], x0[i], atol=1e-6)


@pytest.mark.parametrize("sampling", ["uniform", "shifted"])
def test_expert_ranges_split_at_the_boundary(sampling):
    gen = torch.Generator().manual_seed(1)
    boundary, shift = 0.9, 4.0
    high = draw_sigmas(gen, 2000, *u_range("high", boundary, sampling, shift), sampling, shift)
    low = draw_sigmas(gen, 2000, *u_range("low", boundary, sampling, shift), sampling, shift)
    assert high.min() >= boundary - 1e-6 and high.max() <= 1.0
    assert low.max() < boundary and low.min() >= 0.0
    lo, hi = u_range(None, boundary, sampling, shift)
    assert (lo, hi) == (0.0, 1.0)
    cut = u_range("high", boundary, sampling, shift)[0]
    assert float(sigma_from_u(torch.tensor(cut, dtype=torch.float64), sampling, shift)) == pytest.approx(boundary)


def test_shifted_sampling_favours_high_noise():
    gen = torch.Generator().manual_seed(2)
    sig = draw_sigmas(gen, 4000, 0.0, 1.0, "shifted", 4.0)
    assert float(sig.median()) == pytest.approx(0.8, abs=0.03)  # shift(0.5) = 4*0.5/(1+3*0.5) = 0.8


class _Echo(torch.nn.Module):
    """A stand-in transformer: returns a fixed prediction, records its inputs."""

    def __init__(self, pred):
        super().__init__()
        self.pred, self.rope, self.seen = pred, None, {}

    def forward(self, hidden_states, timestep, encoder_hidden_states, return_dict=False):
        self.seen.update(hidden=hidden_states, timestep=timestep)
        return (self.pred,)


def test_loss_is_on_shot_frames_only(monkeypatch):
    from storymem_cli.train import step

    monkeypatch.setattr(step, "rope_positions", lambda models, positions: _null())
    gen = torch.Generator().manual_seed(3)
    x0, noise = torch.randn(1, 16, 5, 2, 2, generator=gen), torch.randn(1, 16, 5, 2, 2, generator=gen)
    sigma = torch.tensor([0.5])
    batch = EncodedBatch(x0, torch.zeros(1, 20, 5, 2, 2), torch.zeros(1, 3, 8), memory_frames=2)
    _, target = flow_pair(x0, noise, sigma)
    pred = target.clone()
    pred[:, :, 2:] += 0.5  # error on the shot
    pred_garbage_memory = pred.clone()
    pred_garbage_memory[:, :, :2] = 100.0  # memory positions: thrown away at inference
    a = flow_loss(_Echo(pred), batch, sigma, noise, RopeConfig())
    b = flow_loss(_Echo(pred_garbage_memory), batch, sigma, noise, RopeConfig())
    assert float(a) == pytest.approx(0.25) and float(b) == float(a)
    model = _Echo(pred)
    flow_loss(model, batch, sigma, noise, RopeConfig())
    assert model.seen["hidden"].shape[1] == 36  # noisy latent, then mask + condition, like the pipeline
    assert float(model.seen["timestep"]) == pytest.approx(500.0)


def test_chroma_weights_sit_on_the_latents_over_saturated_pixels():
    pixels = torch.zeros(1, 3, 9, 8, 8)  # grey video, [-1, 1] range: chroma 0
    pixels[0, 0, 5:9, 4:8, 0:4] = 1.0  # frames 5-8, a red square in the bottom-left quarter: R=1, G=B=0
    pixels[0, 1:, 5:9, 4:8, 0:4] = -1.0
    w = latent_chroma_weights(pixels, 10.0, spatial=4, temporal=4)
    assert w.shape == (1, 1, 3, 2, 2)  # frame 0 alone, then frames 1-4 and 5-8
    expected = torch.ones(1, 1, 3, 2, 2)
    expected[0, 0, 2, 1, 0] = 11.0  # chroma (1 - -1) / 2 = 1 over the whole latent
    assert torch.allclose(w, expected)
    assert torch.equal(latent_chroma_weights(pixels, 0.0, 4, 4), torch.ones(1, 1, 3, 2, 2))


def test_weighted_loss_counts_errors_where_the_weights_are(monkeypatch):
    from storymem_cli.train import step

    monkeypatch.setattr(step, "rope_positions", lambda models, positions: _null())
    x0, noise, sigma = torch.zeros(1, 2, 3, 1, 2), torch.zeros(1, 2, 3, 1, 2), torch.tensor([0.5])
    weights = torch.ones(1, 1, 2, 1, 2)
    weights[0, 0, 1, 0, 1] = 7.0  # one heavy latent of the shot's 4
    pred = torch.zeros(1, 2, 3, 1, 2)
    pred[:, :, 2, 0, 1] = 1.0  # error 1 exactly there (and garbage on the memory frame, ignored)
    pred[:, :, 0] = 50.0
    batch = EncodedBatch(x0, torch.zeros(1, 6, 3, 1, 2), torch.zeros(1, 3, 8), memory_frames=1, loss_weights=weights)
    assert float(flow_loss(_Echo(pred), batch, sigma, noise, RopeConfig())) == pytest.approx(7.0 / 10.0)
    batch.loss_weights = None
    assert float(flow_loss(_Echo(pred), batch, sigma, noise, RopeConfig())) == pytest.approx(1.0 / 4.0)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("memory, known", [(0, 0), (3, 1), (2, 5)])
def test_training_inputs_equal_inference_inputs(m2v_pipe, memory, known):
    """Condition + mask, prompt embeddings and rope positions as StoryMemM2VPipeline builds them."""
    rng = np.random.default_rng(memory)
    height, width, frames = 48, 64, 9
    video = rng.integers(0, 256, (frames, 64, 64, 3), dtype=np.uint8)
    mem = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(memory)]
    sample = Sample(video, mem, list(video[:known]), "a red circle hops to the left on the beach", "m2v")
    batch = encode_batch(m2v_pipe, [sample], height, width, torch.device("cpu"), TextCache())

    seen = {}

    def spy(module, args, kwargs):
        if "hidden" not in seen:  # the conditional pass of the first step
            seen["hidden"] = kwargs["hidden_states"].clone()
            seen["text"] = kwargs["encoder_hidden_states"].clone()
            seen["positions"] = module.rope.frame_positions

    handle = m2v_pipe.transformer.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        m2v_pipe(prompt=sample.caption, memory_images=mem, first_frames=sample.first_frames, height=height,
                 width=width, num_frames=frames, num_inference_steps=1, output_type="latent")  # fmt: skip
    finally:
        handle.remove()
    z = m2v_pipe.vae.config.z_dim
    assert seen["hidden"].shape[2:] == batch.x0.shape[2:]
    inference = seen["hidden"][:, z:]  # mask + memory latents + shot condition
    assert torch.equal(inference[:, :4], batch.condition[:, :4])  # the mask, exactly
    assert torch.equal(inference[:, 4:, memory:], batch.condition[:, 4:, memory:])  # the shot's I2V condition
    # memory: training encodes one image at a time (cached per frame), inference all M as one batch of
    # 1-frame videos; the same computation up to float rounding of batched convolutions
    assert torch.allclose(inference[:, 4:, :memory], batch.condition[:, 4:, :memory], atol=1e-5, rtol=0)
    if memory <= 1:
        assert torch.equal(inference, batch.condition)
    assert torch.equal(seen["text"], batch.prompt_embeds)
    assert seen["positions"] == frame_positions(batch.memory_frames, batch.shot_frames, RopeConfig())
    assert batch.memory_frames == memory


def test_encoded_batch_weights_cover_the_shot_latents(m2v_pipe):
    """--loss-chroma-weight: one weight per latent of the shot, heavy where a saturated sprite is."""
    video = np.full((9, 64, 64, 3), 128, dtype=np.uint8)
    video[:, 40:64, 0:16] = (230, 30, 30)  # a red block in the bottom-left, every frame
    sample = Sample(video, [video[0]], [], "the hero hops to the left on the beach", "m2v")
    batch = encode_batch(m2v_pipe, [sample], 48, 64, torch.device("cpu"), TextCache(), chroma_weight=10.0)
    assert batch.loss_weights.shape == (1, 1, batch.shot_frames, *batch.x0.shape[-2:])
    w = batch.loss_weights[0, 0]
    assert bool((w[:, -1, 0] > 5.0).all()) and torch.equal(w[:, 0, -1], torch.ones_like(w[:, 0, -1]))
    assert encode_batch(m2v_pipe, [sample], 48, 64, torch.device("cpu"), TextCache()).loss_weights is None


def test_trained_text_encoder_sees_what_inference_encodes(m2v_pipe):
    """A trainable encoder runs on the captions' own tokens; the embeddings are the 512-position ones."""
    captions = ["a red circle hops to the left on the beach", "the hero shrinks in the cave"]
    short = TextCache().encode(m2v_pipe, captions, torch.device("cpu"), frozen=False)
    full = TextCache._encode(m2v_pipe, captions, torch.device("cpu"))
    assert short.shape == full.shape
    assert torch.allclose(short, full, atol=1e-5, rtol=0)


def test_text_cache_is_exact(m2v_pipe):
    cache = TextCache()
    captions = ["a red circle hops to the left on the beach", "the hero shrinks in the cave"]
    first = cache.encode(m2v_pipe, captions, torch.device("cpu"), frozen=True)
    again = cache.encode(m2v_pipe, captions[::-1], torch.device("cpu"), frozen=True)
    with torch.no_grad():  # as the pipeline encodes
        direct = torch.cat([TextCache._encode(m2v_pipe, [c], torch.device("cpu")) for c in captions])
    assert torch.equal(first, direct) and torch.equal(again, direct.flip(0))
    assert first.shape[1] == 512 and not first[:, 64:].any()  # zero-padded like the pipeline


def test_latent_cache_returns_what_the_vae_returns():
    from storymem_cli.models.registry import load_story_model, resolve_preset
    from storymem_cli.train.step import LatentCache, encode_video

    pipe = load_story_model(resolve_preset("tiny"), CPU).pipeline("m2v")  # its own instance: the cache patches it
    rng = np.random.default_rng(9)
    clip_a, clip_b = (rng.integers(0, 256, (9, 48, 64, 3), dtype=np.uint8) for _ in range(2))
    device = torch.device("cpu")
    plain = [encode_video(pipe, c, 48, 64, device) for c in (clip_a, clip_b)]
    cache = LatentCache(max_bytes=1 << 30)
    cache.install(pipe)
    first = [encode_video(pipe, c, 48, 64, device) for c in (clip_a, clip_b, clip_a)]
    assert (cache.hits, cache.misses) == (1, 2)
    assert torch.equal(first[0], plain[0]) and torch.equal(first[1], plain[1]) and torch.equal(first[2], plain[0])
    small = LatentCache(max_bytes=plain[0].numel() * 4)  # room for one entry
    small.install(pipe)
    for c in (clip_a, clip_b, clip_a):
        encode_video(pipe, c, 48, 64, device)
    assert small.misses == 3 and small.bytes <= small.max_bytes


def test_latent_cache_survives_a_stage(tmp_path):
    from storymem_cli.models.registry import load_story_model, resolve_preset
    from storymem_cli.train.step import LatentCache, encode_video

    pipe = load_story_model(resolve_preset("tiny"), CPU).pipeline("m2v")
    clip = np.random.default_rng(10).integers(0, 256, (5, 48, 64, 3), dtype=np.uint8)
    cache = LatentCache(max_bytes=1 << 30)
    cache.install(pipe)
    tag = LatentCache.vae_tag(pipe.vae)
    first = encode_video(pipe, clip, 48, 64, torch.device("cpu"))
    cache.save(tmp_path / "cache.pt", tag)
    again = LatentCache(max_bytes=1 << 30)
    assert again.load(tmp_path / "cache.pt", "another vae", torch.device("cpu")) == 0
    assert again.load(tmp_path / "cache.pt", tag, torch.device("cpu")) == 1
    again.install(pipe)
    assert torch.equal(encode_video(pipe, clip, 48, 64, torch.device("cpu")), first)
    assert (again.hits, again.misses) == (1, 0)
