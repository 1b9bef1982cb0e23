"""Fixtures for the memory area: synthetic frames, plateau embeddings, a run folder."""

from __future__ import annotations

import types
from pathlib import Path

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
        self.device = "cpu"


@pytest.fixture
def fake_hpsv3(monkeypatch):
    """``fake_hpsv3(mu)`` makes the hpsv3 scorer load a fake reward model whose rewards have mean
    ``mu(n)``; the returned log sees what it was asked and where its model was."""
    from storymem_cli.memory import quality
    from storymem_cli.scoring import hpsv3, hpsv3_files

    def install(mu):
        log = types.SimpleNamespace(loads=0, prompts=[], sizes=[], scored_on=[], events=[], reward=None, fail=False)

        class FakeReward:
            def __init__(self):
                self.model = FakeHpsModel()

            def to(self, device):
                self.model.device = str(device)
                return self

            def reward(self, images, prompts):
                if log.fail:
                    raise RuntimeError("CUDA out of memory")
                log.prompts.extend(prompts)
                log.sizes.extend(image.size for image in images)
                log.scored_on.append(self.model.device)
                log.events.append(("score", self.model.device))
                n = len(images)
                return torch.stack([mu(n), torch.full((n,), 9.0)], dim=1)

        def load(files, dtype=None):
            log.loads += 1
            log.reward = FakeReward()
            return log.reward

        found = hpsv3_files.HPSv3Files(checkpoint=Path("HPSv3.safetensors"), base=Path("Qwen2-VL-7B-Instruct"))
        monkeypatch.setattr(hpsv3_files, "locate_hpsv3", lambda weights=None: found)
        monkeypatch.setattr(hpsv3.HPSv3Reward, "load", staticmethod(load))
        monkeypatch.setattr(quality, "_CACHE", {})
        return log

    return install
