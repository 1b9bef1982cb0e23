"""Fixtures: the tiny preset and a request for it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_request():
    from storymem_cli.models.presets import TINY
    from storymem_cli.pipeline.request import ShotRequest

    def make(**kw):
        base = {"mode": "m2v", "prompt": "a lighthouse at dusk", "width": TINY.video.width, "height": TINY.video.height,
                    "frames": TINY.video.frames, "steps": 2, "seed": 3}  # fmt: skip
        return ShotRequest(**{**base, **kw})

    return make


def _write_published_lora(folder, config: dict, rank: int = 4) -> None:
    """A random StoryMem LoRA in the published layout for a transformer of ``config``, both variants and
    experts (shapes from the expert built on the meta device; numpy, so no tensor is loaded to write it)."""
    import numpy as np
    from safetensors.numpy import save_file

    from storymem_cli.models.lora_files import STORYMEM_VARIANT_DIRS, storymem_hub_files
    from storymem_cli.models.lora_keys import expected_keys
    from storymem_cli.models.wan_a14b import build_meta_transformer

    expert = build_meta_transformer(config)
    rng = np.random.default_rng(0)
    tensors = {}
    for key in expected_keys(len(expert.blocks)):
        linear = expert.get_submodule(key.diffusers_module)
        shape = (rank, linear.in_features) if key.factor == "A" else (linear.out_features, rank)
        tensors[key.published_key] = (rng.standard_normal(shape) * 0.01).astype(np.float32)
    for variant in STORYMEM_VARIANT_DIRS:
        for path in storymem_hub_files(variant):
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            save_file(tensors, str(folder / path))


@pytest.fixture(scope="session")
def a14b_layout_folder(tmp_path_factory):
    """A model folder laid out as `storymem download --local-dir` writes it (i2v/, t2v/, lora/), with the
    tiny model's weights (built by models/tiny.py, cached between sessions) and a tiny published-layout
    StoryMem LoRA: what `--model DIR` resolves to the wan2.2-a14b preset with these folders."""
    import json
    import shutil

    from storymem_cli.models.tiny import tiny_model_dir

    dest = tmp_path_factory.mktemp("a14b-layout") / "model"
    for kind in ("i2v", "t2v"):
        shutil.copytree(tiny_model_dir() / kind, dest / kind)
    config = json.loads((dest / "i2v" / "transformer" / "config.json").read_text())
    _write_published_lora(dest / "lora", {k: v for k, v in config.items() if not k.startswith("_")})
    return dest


@pytest.fixture
def model_folder(a14b_layout_folder, tmp_path):
    """A private copy of ``a14b_layout_folder`` a test may break."""
    import shutil

    return shutil.copytree(a14b_layout_folder, tmp_path / "model")
