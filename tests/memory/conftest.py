"""Fixtures for the memory area: synthetic frames, plateau embeddings, a run folder."""

from __future__ import annotations

import numpy as np
import pytest

from storymem_cli.config import MemoryConfig


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def frames(rng: np.random.Generator) -> np.ndarray:
    """Six small random RGB frames, uint8 (N, H, W, 3), non-square like video."""
    return rng.integers(0, 256, size=(6, 40, 72, 3), dtype=np.uint8)


@pytest.fixture
def cfg() -> MemoryConfig:
    return MemoryConfig()


class Synthetic:
    """Helpers for synthetic embeddings, handed to tests as the ``synth`` fixture
    (pytest's importlib mode does not let tests import conftest)."""

    @staticmethod
    def unit(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float32)
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    @staticmethod
    def plateaus(
        n_plateaus: int, frames_per: int, dim: int = 64, seed: int = 0, noise: float = 0.01
    ) -> np.ndarray:
        """Embeddings of a shot made of ``n_plateaus`` still segments: near-identical within a
        segment (cosine > 0.99), near-orthogonal across segments."""
        unit = Synthetic.unit
        g = np.random.default_rng(seed)
        centres = unit(g.normal(size=(n_plateaus, dim)))
        rows = [unit(c + noise * g.normal(size=(frames_per, dim))) for c in centres]
        return np.concatenate(rows).astype(np.float32)


@pytest.fixture
def synth() -> type[Synthetic]:
    return Synthetic
