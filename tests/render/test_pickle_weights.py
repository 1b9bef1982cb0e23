"""A model folder whose weights are a pickle holding more than tensors: refused with what to do,
never with torch's advice to turn weights_only off (issue 22)."""

from __future__ import annotations

import pathlib
import pickle

import torch
from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.models import registry
from storymem_cli.render import components

from .conftest import small_story, write_script


def test_pickle_weights_are_refused_without_suggesting_weights_only_false(tmp_path, monkeypatch):
    weights = tmp_path / "diffusion_pytorch_model.bin"
    weights.write_bytes(pickle.dumps({"w": pathlib.PurePosixPath("not a tensor")}))

    def load_story_model(preset, options):  # what diffusers does with a .bin: torch.load(weights_only=True)
        return torch.load(weights, weights_only=True)

    monkeypatch.setattr(registry, "load_story_model", load_story_model)
    monkeypatch.setattr(components, "load_model", components.load_model)  # the real one, not a test recorder
    script = write_script(tmp_path, "boat.json", small_story("Boat"))
    result = CliRunner().invoke(app, ["render", str(script), "-o", str(tmp_path / "run"), "--model", "tiny"])
    assert result.exit_code == 2, result.output
    assert "pickle" in result.stderr and "safetensors" in result.stderr
    assert "weights_only=False" not in result.output and "Traceback" not in result.output
