"""Every aesthetic scorer's code imports with storymem's own dependencies (no optional package)."""

from __future__ import annotations

import importlib

import pytest

from storymem_cli.memory import quality

# The modules each scorer's loader imports, and what they need from libraries.
MODULES = {
    "hpsv3": ("storymem_cli.scoring.hpsv3", "storymem_cli.scoring.hpsv3_model", "storymem_cli.scoring.hpsv3_inputs",
              "storymem_cli.scoring.hpsv3_files"),
    "laion": ("storymem_cli.scoring.laion", "storymem_cli.scoring.clip"),
    "tiny": ("storymem_cli.scoring.laion",),
}  # fmt: skip


def test_every_model_scorer_is_listed():
    assert set(MODULES) == set(quality._LOADERS)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_scorer_modules_import(name):
    for module in MODULES[name]:
        importlib.import_module(module)


def test_hpsv3_needs_only_transformers_5_pieces():
    # What the scorer takes from transformers (5.x): a missing one would fail only when HPSv3 loads.
    from transformers import Qwen2VLConfig, Qwen2VLImageProcessorPil, Qwen2VLModel, Qwen2VLProcessor  # noqa: F401
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize  # noqa: F401

    import jinja2  # noqa: F401  (chat templates)
