"""SPEC 2 layout: condition latent, mask and positions for M2V / MI2V / MM2V."""

from __future__ import annotations

import PIL.Image
import pytest
import torch

from storymem_cli.config import RopeConfig
from storymem_cli.pipeline.layout import (
    condition_mask,
    frame_positions,
    latent_frame_count,
    shot_condition_video,
)

MODES = {"m2v": 0, "mi2v": 1, "mm2v": 5}  # known first pixel frames
KNOWN_LATENTS = {"m2v": [], "mi2v": [0], "mm2v": [0, 1]}  # shot latent frames the mask marks known


def test_latent_frame_count():
    assert [latent_frame_count(f) for f in (1, 5, 9, 81)] == [1, 2, 3, 21]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("memory", [0, 1, 3, 10])
def test_mask_per_frame(mode, memory):
    frames, h, w = 81, 3, 4
    mask = condition_mask(memory, frames, MODES[mode], h, w)
    assert mask.shape == (1, 4, memory + 21, h, w)
    per_frame = mask.amax(dim=(0, 1, 3, 4))
    assert torch.equal(per_frame, mask.amin(dim=(0, 1, 3, 4)))  # each latent frame all 0 or all 1
    expected = [1.0] * memory + [1.0 if t in KNOWN_LATENTS[mode] else 0.0 for t in range(21)]
    assert per_frame.tolist() == expected


def test_shot_condition_video_puts_known_frames_first():
    known = torch.rand(5, 3, 16, 16) * 2 - 1
    video = shot_condition_video(known, 9, 16, 16)
    assert video.shape == (1, 3, 9, 16, 16)
    assert torch.equal(video[0, :, :5], known.transpose(0, 1))
    assert not video[0, :, 5:].any()
    assert not shot_condition_video(None, 9, 16, 16).any()


def test_negative_positions_exact():
    assert frame_positions(3, 4, RopeConfig(mode="negative", shift=5.0)) == (-15, -10, -5, 0, 1, 2, 3)
    assert frame_positions(0, 2, RopeConfig()) == (0, 1)
    assert frame_positions(2, 2, RopeConfig(mode="sequential")) == (0, 1, 2, 3)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("memory", [0, 1, 3, 10])
def test_pipeline_condition(m2v_pipe, images, mode, memory):
    width, height, frames = 64, 48, 9
    device = torch.device("cpu")
    mem = images(memory)
    first = images(MODES[mode], (height, width))
    mem_latents = m2v_pipe.encode_memory(mem, height, width, device)
    cond = m2v_pipe.prepare_condition(mem_latents, first, height, width, frames, device)
    t = latent_frame_count(frames)
    assert mem_latents.shape == (1, 16, memory, height // 8, width // 8)
    assert cond.shape == (1, 4 + 16, memory + t, height // 8, width // 8)
    mask = cond[:, :4].amax(dim=(0, 1, 3, 4)).tolist()
    assert mask == [1.0] * memory + [1.0 if i in KNOWN_LATENTS[mode] else 0.0 for i in range(t)]
    assert torch.equal(cond[:, 4:, :memory], mem_latents)


def test_memory_latent_equals_image_encoded_alone(m2v_pipe, images):
    width, height = 64, 48
    mem = images(3, (30, 50))
    together = m2v_pipe.encode_memory(mem, height, width, torch.device("cpu"))
    vae = m2v_pipe.vae
    mean = torch.tensor(vae.config.latents_mean).view(1, 16, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, 16, 1, 1, 1)
    for k, img in enumerate(mem):
        pixels = m2v_pipe.video_processor.preprocess(
            PIL.Image.fromarray(img), height=height, width=width, resize_mode="crop"
        )
        with torch.no_grad():
            alone = vae.encode(pixels.unsqueeze(2)).latent_dist.mode()
        torch.testing.assert_close(together[:, :, k : k + 1], (alone - mean) / std, rtol=1e-5, atol=1e-5)


def test_mi2v_without_memory_equals_stock_i2v_condition(m2v_pipe, images):
    """With M = 0 and one known frame, our condition is diffusers' own I2V condition."""
    from diffusers import WanImageToVideoPipeline

    width, height, frames = 64, 48, 9
    first = images(1, (height, width))
    device = torch.device("cpu")
    stock = WanImageToVideoPipeline(**{k: v for k, v in m2v_pipe.components.items() if v is not None})
    pixels = stock.video_processor.preprocess(
        PIL.Image.fromarray(first[0]), height=height, width=width
    )
    with torch.no_grad():
        _, stock_cond = stock.prepare_latents(
            pixels, 1, 16, height, width, frames, torch.float32, device, torch.Generator().manual_seed(0)
        )
        ours = m2v_pipe.prepare_condition(
            m2v_pipe.encode_memory([], height, width, device), first, height, width, frames, device
        )
    torch.testing.assert_close(ours, stock_cond, rtol=1e-5, atol=1e-5)
