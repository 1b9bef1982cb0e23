"""--cache at A14B size (issue 30): TaylorSeer's memory is bounded and freed per expert, the
first-block cache's threshold does not depend on how much memory a shot carries."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
import torch

from storymem_cli.config import RopeConfig
from storymem_cli.errors import InvalidInputError
from storymem_cli.models.runtime import RuntimeOptions
from storymem_cli.models.speed import apply_speed_options
from storymem_cli.models.step_cache import (
    GIB,
    check_taylorseer_fits,
    steps_without_prediction,
    taylorseer_bytes,
    taylorseer_cached_widths,
)
from storymem_cli.pipeline.layout import frame_positions
from storymem_cli.pipeline.rope import rope_positions

A14B_TOKENS = 48_360  # 832x480, 21 shot + 10 memory latent frames: 31 x 30 x 52
TAYLORSEER = RuntimeOptions(cache="taylorseer")


def _tiny_expert(seed: int = 0):
    from diffusers import WanTransformer3DModel

    from storymem_cli.models.tiny import TINY_TRANSFORMER

    torch.manual_seed(seed)
    return WanTransformer3DModel(in_channels=36, **TINY_TRANSFORMER).eval()


def _held_tensors(transformer) -> int:
    """Tensors held in the states of every cache hook on the expert (residuals, Taylor factors)."""

    def count(value) -> int:
        if isinstance(value, torch.Tensor):
            return 1
        if isinstance(value, (list, tuple)):
            return sum(count(v) for v in value)
        if isinstance(value, dict):
            return sum(count(v) for v in value.values())
        return 0

    total = 0
    for module in transformer.modules():
        for hook in getattr(getattr(module, "_diffusers_hook", None), "hooks", {}).values():
            manager = getattr(hook, "state_manager", None)
            for state in getattr(manager, "_state_cache", {}).values():
                total += count(vars(state))
    return total


def test_taylorseer_at_a14b_size_is_bounded():
    """From the real widths on the meta device: the output head's 64 values a token are kept, not
    every block's attention and feed-forward outputs (5120 x 3 x 40 a token: 221 GiB per expert)."""
    from diffusers import TaylorSeerCacheConfig

    from storymem_cli.models.wan_a14b import a14b_transformer_config, build_meta_transformer

    expert = build_meta_transformer(a14b_transformer_config("i2v"))
    apply_speed_options(expert, TAYLORSEER, torch.bfloat16)
    assert taylorseer_cached_widths(expert) == [64]  # proj_out: 16 channels x 1x2x2 patches
    lite = taylorseer_bytes(expert, A14B_TOKENS, branches=2)
    assert lite == A14B_TOKENS * 64 * 2 * 2 * 2 and lite < 32 * 1024**2  # 2 terms x 2 branches x bf16: 23.6 MiB

    every_block = build_meta_transformer(a14b_transformer_config("i2v"))
    every_block.enable_cache(TaylorSeerCacheConfig(cache_identifiers=[r"blocks\.\d+\.attn1", r"blocks\.\d+\.attn2",
                                                                      r"blocks\.\d+\.ffn"]))  # the layout before  # fmt: skip
    assert taylorseer_cached_widths(every_block) == [5120] * 120
    assert taylorseer_bytes(every_block, A14B_TOKENS, branches=2) / GIB == pytest.approx(221.4, abs=0.1)


def test_taylorseer_refuses_what_the_gpu_cannot_hold(monkeypatch):
    from diffusers import TaylorSeerCacheConfig

    from storymem_cli.models.wan_a14b import a14b_transformer_config, build_meta_transformer

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (40 * GIB, 80 * GIB))
    lite = build_meta_transformer(a14b_transformer_config("i2v"))
    apply_speed_options(lite, TAYLORSEER, torch.bfloat16)
    assert check_taylorseer_fits(lite, A14B_TOKENS, 2, torch.device("cuda")) < GIB
    every_block = build_meta_transformer(a14b_transformer_config("i2v"))
    every_block.enable_cache(TaylorSeerCacheConfig(cache_identifiers=[r"blocks\.\d+\.ffn"]))
    with pytest.raises(InvalidInputError, match=r"needs 73\.8 GiB per expert at 48,360 tokens.*40\.0 GiB free"):
        check_taylorseer_fits(every_block, A14B_TOKENS, 2, torch.device("cuda"))
    assert check_taylorseer_fits(every_block, A14B_TOKENS, 2, torch.device("cpu")) > 70 * GIB  # no GPU to compare


def test_taylorseer_bytes_are_what_the_cache_holds():
    """The computed size equals the bytes in the Taylor factors after two full steps per branch."""
    expert = _tiny_expert()
    apply_speed_options(expert, TAYLORSEER, torch.float32)
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(1, 36, 3, 6, 8, generator=gen)  # 3 latent frames of 3 x 4 tokens
    text = torch.randn(1, 5, expert.config.text_dim, generator=gen)
    with torch.no_grad():
        for t in (900.0, 800.0):
            for branch in ("cond", "uncond"):
                with expert.cache_context(branch):
                    expert(hidden_states=hidden, timestep=torch.tensor([t]), encoder_hidden_states=text)
    held = 0
    for module in expert.modules():
        hook = getattr(module, "_diffusers_hook", None) and module._diffusers_hook.get_hook("taylorseer_cache")
        for state in getattr(getattr(hook, "state_manager", None), "_state_cache", {}).values():
            held += sum(f.numel() * f.element_size() for terms in state.taylor_factors.values() for f in terms.values())
    assert held == taylorseer_bytes(expert, tokens=3 * 3 * 4, branches=2) > 0


@pytest.mark.parametrize("cache", ["taylorseer", "first-block"])
def test_each_experts_cache_is_freed_when_it_has_no_step_left(cache):
    """The high-noise expert's cache is empty once the low-noise expert runs, and both are empty
    before the VAE decode."""
    from storymem_cli.models.presets import TINY
    from storymem_cli.models.registry import load_story_model, resolve_preset
    from storymem_cli.pipeline.request import ShotRequest

    model = load_story_model(resolve_preset("tiny"), RuntimeOptions(device="cpu", cache=cache, cache_threshold=1.0))
    pipe = model.pipeline("m2v")
    high, low = pipe.transformer, pipe.transformer_2
    seen = {"high": [], "low at start": [], "decode": []}
    hooks = [high.register_forward_hook(lambda *_: seen["high"].append(_held_tensors(high))),
             low.register_forward_pre_hook(lambda *_: seen["low at start"].append(_held_tensors(high)))]  # fmt: skip
    decode = pipe.decode

    def checked_decode(*args, **kwargs):
        seen["decode"].append(_held_tensors(high) + _held_tensors(low))
        return decode(*args, **kwargs)

    pipe.decode = checked_decode
    request = ShotRequest(mode="m2v", prompt="a lighthouse", width=TINY.video.width, height=TINY.video.height,
                          frames=TINY.video.frames, steps=6, seed=3, memory=[np.full((48, 64, 3), 90, np.uint8)])  # fmt: skip
    with pytest.warns(UserWarning, match="high-noise expert runs 2 step") if cache == "taylorseer" else nullcontext():
        model.generate(request)
    for hook in hooks:
        hook.remove()
    assert max(seen["high"]) > 0  # the high-noise expert did cache something
    assert seen["low at start"] and set(seen["low at start"]) == {0}
    assert seen["decode"] == [0]


def test_experts_whose_steps_are_all_warm_up():
    """A 4-step Lightning-style first shot (shift 12, boundary 0.875): 3 high-noise steps and 1
    low-noise step, neither past TaylorSeer's 3 warm-up steps. The paper's 40 M2V steps: both are."""
    from storymem_cli.pipeline.sigmas import release_sigmas

    four = release_sigmas(4, 12.0) * 1000
    assert steps_without_prediction(four, 0.875) == {"high": 3, "low": 1}
    assert steps_without_prediction(release_sigmas(40, 4.0) * 1000, 0.9) == {}


def _skipped_steps(shot_tokens_only: bool, memory_frames: int, threshold: float = 0.15) -> list[bool]:
    """Which of 10 steps the first-block cache skips on a tiny expert whose first block is token-wise
    (its self-attention output zeroed), so the shot's tokens give the same residuals whatever the
    memory; the shot's latents move by uneven amounts from step to step, the memory's stay."""
    from diffusers import FirstBlockCacheConfig
    from diffusers.hooks.first_block_cache import _FBC_LEADER_BLOCK_HOOK

    expert = _tiny_expert()
    with torch.no_grad():
        expert.blocks[0].attn1.to_out[0].weight.zero_()
        expert.blocks[0].attn1.to_out[0].bias.zero_()
    if shot_tokens_only:
        apply_speed_options(expert, RuntimeOptions(cache="first-block", cache_threshold=threshold), torch.float32)
    else:  # diffusers' own metric, over all M + T frames
        expert.enable_cache(FirstBlockCacheConfig(threshold=threshold))
    gen = torch.Generator().manual_seed(1)
    shot, direction = torch.randn(2, 1, 36, 3, 4, 6, generator=gen)
    text = torch.randn(1, 5, expert.config.text_dim, generator=gen)
    memory = torch.randn(1, 36, memory_frames, 4, 6, generator=gen)  # drawn last: the rest is the same for any M
    skipped = []
    positions = frame_positions(memory_frames, 3, RopeConfig())
    for step in range(10):
        hidden = torch.cat([memory, shot + 0.3 * step * (1 + step % 3) * direction], dim=2)
        with rope_positions([expert], positions, memory_frames), expert.cache_context("cond"), torch.no_grad():
            expert(hidden_states=hidden, timestep=torch.tensor([1000.0 - 100 * step]), encoder_hidden_states=text)
            state = expert.blocks[0]._diffusers_hook.get_hook(_FBC_LEADER_BLOCK_HOOK).state_manager.get_state()
            skipped.append(not state.should_compute)
    return skipped


def test_first_block_threshold_skips_the_same_steps_whatever_the_memory():
    at_3, at_10 = _skipped_steps(True, 3), _skipped_steps(True, 10)
    assert at_3 == at_10 and any(at_3) and not all(at_3)
    # diffusers' metric over all tokens: memory that changes less makes the same threshold skip more
    assert sum(_skipped_steps(False, 10)) > sum(_skipped_steps(False, 3))
