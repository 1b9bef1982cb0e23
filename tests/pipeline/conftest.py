"""Fixtures: the tiny model (built once per configuration, cached on disk) and its M2V pipeline."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_model():
    from storymem_cli.models.registry import (
        RuntimeOptions,
        load_story_model,
        resolve_preset,
    )

    return load_story_model(resolve_preset("tiny"), RuntimeOptions(device="cpu"))  # CPU inputs in these tests


@pytest.fixture(scope="session")
def m2v_pipe(tiny_model):
    return tiny_model.pipeline("m2v")


@pytest.fixture
def images():
    """Random uint8 images of assorted sizes (the pipeline resizes)."""
    rng = np.random.default_rng(0)

    def make(n: int, size: tuple[int, int] = (40, 56)) -> list[np.ndarray]:
        return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]

    return make
