"""SPEC 3: temporal positions of memory through the replacement rope module."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from diffusers.models.embeddings import get_1d_rotary_pos_embed
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

from storymem_cli.config import RopeConfig
from storymem_cli.pipeline.layout import frame_positions
from storymem_cli.pipeline.rope import (
    StoryRotaryPosEmbed,
    install_story_rope,
    rope_positions,
)

MEMORY, SHOT = 3, 3


@pytest.fixture(scope="module")
def experts(m2v_pipe):
    """A stock copy (diffusers' own rope) and our copy of the tiny high-noise expert."""
    ours = copy.deepcopy(m2v_pipe.transformer)
    stock = copy.deepcopy(ours)
    stock.rope = WanRotaryPosEmbed(stock.rope.attention_head_dim, stock.rope.patch_size, stock.rope.max_seq_len)
    install_story_rope(ours)
    return stock, ours


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(1, 36, MEMORY + SHOT, 6, 8, generator=g)
    text = torch.randn(1, 512, 32, generator=g)
    return {"hidden_states": hidden, "timestep": torch.tensor([700.0]), "encoder_hidden_states": text, "return_dict": False}


def run(model, inputs, positions=None):
    with torch.no_grad():
        if positions is None:
            return model(**inputs)[0]
        with rope_positions([model], positions):
            return model(**inputs)[0]


def test_module_name_and_weights_unchanged(m2v_pipe):
    model = copy.deepcopy(m2v_pipe.transformer_2)
    keys = set(model.state_dict())
    install_story_rope(model)
    assert isinstance(model.rope, StoryRotaryPosEmbed) and isinstance(model.rope, WanRotaryPosEmbed)
    assert set(model.state_dict()) == keys


def test_sequential_equals_stock_exactly(experts, inputs):
    stock, ours = experts
    positions = frame_positions(MEMORY, SHOT, RopeConfig(mode="sequential"))
    assert torch.equal(run(ours, inputs, positions), run(stock, inputs))
    assert torch.equal(run(ours, inputs), run(stock, inputs))  # no positions set: the stock module


def test_negative_uses_exact_positions(experts, inputs):
    _, ours = experts
    positions = frame_positions(MEMORY, SHOT, RopeConfig(mode="negative", shift=5.0))
    assert positions == (-15.0, -10.0, -5.0, 0.0, 1.0, 2.0)
    rope = ours.rope
    rope.frame_positions = positions
    try:
        cos, sin = rope(inputs["hidden_states"])
    finally:
        rope.frame_positions = None
    ref_cos, ref_sin = get_1d_rotary_pos_embed(
        rope.t_dim, np.array(positions), use_real=True, repeat_interleave_real=True, freqs_dtype=torch.float64
    )
    tokens = 3 * 4  # (48 / 8 / 2) * (64 / 8 / 2) tokens per latent frame
    t_cos = cos[0, :, 0, : rope.t_dim].view(MEMORY + SHOT, tokens, -1)
    t_sin = sin[0, :, 0, : rope.t_dim].view(MEMORY + SHOT, tokens, -1)
    assert torch.equal(t_cos, ref_cos[:, None].expand_as(t_cos))
    assert torch.equal(t_sin, ref_sin[:, None].expand_as(t_sin))


def test_shifting_all_positions_changes_nothing(experts, inputs):
    _, ours = experts
    positions = frame_positions(MEMORY, SHOT, RopeConfig())
    shifted = [p + 7.25 for p in positions]
    diff = (run(ours, inputs, positions) - run(ours, inputs, shifted)).abs().max().item()
    assert diff < 1e-5


def test_negative_differs_from_sequential(experts, inputs):
    _, ours = experts
    negative = run(ours, inputs, frame_positions(MEMORY, SHOT, RopeConfig(mode="negative")))
    sequential = run(ours, inputs, frame_positions(MEMORY, SHOT, RopeConfig(mode="sequential")))
    assert (negative - sequential).abs().max().item() > 1e-4


def test_tables_cached_per_layout(experts, inputs):
    _, ours = experts
    ours.rope.frame_positions = (-5.0, 0.0, 1.0, 2.0, 3.0, 4.0)
    try:
        first = ours.rope(inputs["hidden_states"])
        assert ours.rope(inputs["hidden_states"]) is first
    finally:
        ours.rope.frame_positions = None


def test_position_count_must_match(experts, inputs):
    _, ours = experts
    with pytest.raises(ValueError, match="frame_positions has 2 entries"):
        run(ours, inputs, (0.0, 1.0))


def test_sequential_equals_stock_after_casting_to_bf16(experts, inputs):
    stock, _ = experts
    stock = copy.deepcopy(stock).to(torch.bfloat16)  # casts the rope tables too
    ours = copy.deepcopy(stock)
    install_story_rope(ours)
    cast = {**inputs, "hidden_states": inputs["hidden_states"].bfloat16(),
            "encoder_hidden_states": inputs["encoder_hidden_states"].bfloat16()}  # fmt: skip
    positions = frame_positions(MEMORY, SHOT, RopeConfig(mode="sequential"))
    assert torch.equal(run(ours, cast, positions), run(stock, cast))


def test_tables_follow_the_activations_device(experts):
    """Group offloading leaves the stock tables on the CPU while the activations are on the GPU: every
    part of the tables must come to the activations' device (the meta device stands in for a GPU)."""
    _, ours = experts
    ours.rope.frame_positions = frame_positions(MEMORY, SHOT, RopeConfig())
    try:
        cos, sin = ours.rope(torch.empty(1, 36, MEMORY + SHOT, 6, 8, device="meta"))
    finally:
        ours.rope.frame_positions = None
    assert cos.device.type == "meta" and sin.device.type == "meta"
    assert cos.shape == (1, (MEMORY + SHOT) * 3 * 4, 1, ours.rope.attention_head_dim)
