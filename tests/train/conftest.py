"""Fixtures: small toy datasets written with toy.dataset, and training configs sized for tests."""

from __future__ import annotations

import pytest

from storymem_cli.models.runtime import RuntimeOptions
from storymem_cli.toy.dataset import write_toy_dataset

CPU = RuntimeOptions(device="cpu")  # the tests build their inputs on the CPU


@pytest.fixture(scope="session")
def toy_dataset(tmp_path_factory):
    """3 groups of 3 toy clips (64x64, 17 frames)."""
    folder = tmp_path_factory.mktemp("toy") / "data"
    write_toy_dataset(folder, groups=3, clips_per_group=3, seed=0)
    return folder


@pytest.fixture(scope="session")
def overfit_dataset(tmp_path_factory):
    """One group of 2 clips: few enough samples to overfit in a few dozen steps."""
    folder = tmp_path_factory.mktemp("toy1") / "data"
    write_toy_dataset(folder, groups=1, clips_per_group=2, seed=1)
    return folder


@pytest.fixture
def small_lora():
    """TrainConfig fields for a fast LoRA run on the tiny preset."""
    # device: the tests feed CPU tensors to what they train
    return {"model": "tiny", "lora_rank": 4, "lora_alpha": 4.0, "warmup_steps": 0, "checkpoint_every": 5, "device": "cpu"}


@pytest.fixture(scope="session")
def m2v_pipe():
    """The tiny preset's M2V pipeline, as inference loads it."""
    from storymem_cli.models.registry import load_story_model, resolve_preset

    return load_story_model(resolve_preset("tiny"), CPU).pipeline("m2v")


@pytest.fixture(scope="session")
def tiny_request():
    from storymem_cli.models.presets import TINY
    from storymem_cli.pipeline.request import ShotRequest

    def make(**kw):
        base = {"mode": "m2v", "prompt": "the hero walks to the left in the forest", "width": TINY.video.width,
                "height": TINY.video.height, "frames": TINY.video.frames, "steps": 2, "seed": 3}  # fmt: skip
        return ShotRequest(**{**base, **kw})

    return make
