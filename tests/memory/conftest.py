"""Fixtures for the memory area: synthetic frames, plateau embeddings, a run folder."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

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


class FakeHpsModel:
    """Stands in for the 17 GB reward model: remembers only where it was moved."""

    def __init__(self) -> None:
        self.device = "nowhere"

    def to(self, device):
        self.device = str(device)
        return self


@pytest.fixture
def fake_hpsv3(monkeypatch):
    """``fake_hpsv3(mu)`` installs a fake ``hpsv3`` package whose rewards have mean ``mu(n)``;
    the returned log sees what its inferencer was asked and where its model was."""
    from storymem_cli.memory import quality

    def install(mu):
        log = types.SimpleNamespace(
            built_on=[], prompts=[], sizes=[], scored_on=[], events=[], inferencer=None, fail=False
        )

        class FakeInferencer:
            def __init__(self, checkpoint_path=None, device="cuda"):
                log.built_on.append(device)
                log.inferencer = self
                self.model = FakeHpsModel().to(device)
                self.device = device

            def reward(self, prompts, image_paths):
                if log.fail:
                    raise RuntimeError("CUDA out of memory")
                log.prompts.extend(prompts)
                log.sizes.extend(image.size for image in image_paths)
                log.scored_on.append(self.model.device)
                log.events.append(("score", self.model.device))
                n = len(image_paths)
                return torch.stack([mu(n), torch.full((n,), 9.0)], dim=1)

        monkeypatch.setitem(sys.modules, "hpsv3", types.SimpleNamespace(HPSv3RewardInferencer=FakeInferencer))
        monkeypatch.setattr(quality, "_CACHE", {})
        return log

    return install
