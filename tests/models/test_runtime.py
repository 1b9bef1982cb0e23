"""Device and memory options reach diffusers and still run on CPU."""

from __future__ import annotations

import numpy as np
import pytest

from storymem_cli.errors import InvalidInputError
from storymem_cli.models.registry import (
    RuntimeOptions,
    load_story_model,
    resolve_preset,
)


@pytest.mark.parametrize(
    "options",
    [
        {"offload": "model"},
        {"offload": "group"},
        {"vae_tiling": True},
        {"attention_backend": "native"},
    ],
)
def test_options_construct_and_run_on_cpu(options, tiny_request):
    model = load_story_model(resolve_preset("tiny"), RuntimeOptions(device="cpu", **options))
    for mode in ("t2v", "m2v"):  # switching pipelines re-applies the options
        frames = model.generate(tiny_request(mode=mode))
        assert frames.shape == (9, 48, 64, 3) and frames.dtype == np.uint8
    if options.get("vae_tiling"):
        assert model.shared["vae"].use_tiling


def test_offload_gives_the_same_frames(tiny_request):
    plain = load_story_model(resolve_preset("tiny"), RuntimeOptions(device="cpu"))
    offloaded = load_story_model(resolve_preset("tiny"), RuntimeOptions(device="cpu", offload="model"))
    a, b = plain.generate(tiny_request()).astype(int), offloaded.generate(tiny_request()).astype(int)
    assert np.abs(a - b).max() <= 1  # float rounding may move a pixel by one level, nothing more


def test_unknown_attention_backend_fails_before_loading():
    with pytest.raises(InvalidInputError, match="--attention 'warp-drive': unknown attention backend") as err:
        load_story_model(resolve_preset("tiny"), RuntimeOptions(device="cpu", attention_backend="warp-drive"))
    assert "native" in str(err.value)


def test_explicit_dtype():
    model = load_story_model(resolve_preset("tiny"), RuntimeOptions(device="cpu", dtype="bfloat16"))
    assert model.describe()["dtype"] == "bfloat16"


def test_group_offload_moves_the_story_rope_with_its_expert(tiny_request):
    """diffusers' group offloading onloads the modules it saw when it was enabled: the story rope must
    be installed before, or its tables stay on the offload device while the activations are on the GPU."""
    from storymem_cli.pipeline.rope import StoryRotaryPosEmbed

    model = load_story_model(resolve_preset("tiny"), RuntimeOptions(device="cpu", offload="group"))
    model.generate(tiny_request(mode="m2v"))
    pipe = model.pipeline("m2v")
    for transformer in (pipe.transformer, pipe.transformer_2):
        assert isinstance(transformer.rope, StoryRotaryPosEmbed)
        group = transformer._diffusers_hook.get_hook("group_offloading").group  # the expert's top-level modules
        assert any(module is transformer.rope for module in group.modules)
