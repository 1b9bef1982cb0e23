"""Frame embedder: tiny config, weights from file / folder, missing weights offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from storymem_cli.errors import InvalidInputError, MissingWeightsError
from storymem_cli.memory.embed import load_embedder
from storymem_cli.scoring.clip import build_clip_visual, clip_config


def _save_tiny_checkpoint(path: Path, seed: int) -> None:
    from open_clip.model import CLIP

    torch.manual_seed(seed)
    torch.save(CLIP(**clip_config("tiny-clip")).state_dict(), path)


def test_tiny_embeddings_are_normalised_float32_and_batch_independent(frames):
    emb = load_embedder("tiny")
    out = emb.embed(frames)
    assert out.shape == (len(frames), emb.dim) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    small = load_embedder("tiny", batch_size=4)
    np.testing.assert_allclose(small.embed(frames), out, atol=1e-5)
    np.testing.assert_allclose(load_embedder("tiny").embed(frames[2:3]), out[2:3], atol=1e-5)


def test_weights_from_a_local_file_and_a_local_folder(tmp_path, frames):
    ckpt = tmp_path / "weights" / "open_clip_pytorch_model.bin"
    ckpt.parent.mkdir()
    _save_tiny_checkpoint(ckpt, seed=7)
    visual = build_clip_visual("tiny-clip", ckpt)
    from storymem_cli.scoring.clip import embed_images

    expected = embed_images(visual, frames, resize="stretch")
    from_file = load_embedder("tiny", weights=ckpt).embed(frames)
    from_dir = load_embedder("tiny", weights=ckpt.parent).embed(frames)
    np.testing.assert_allclose(from_file, expected, atol=1e-6)
    np.testing.assert_allclose(from_dir, expected, atol=1e-6)
    assert not np.allclose(from_file, load_embedder("tiny").embed(frames), atol=1e-3)


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"visual.proj": torch.zeros(3, 3)}, bad)
    with pytest.raises(MissingWeightsError, match="not a tiny-clip checkpoint"):
        load_embedder("tiny", weights=bad)


def test_missing_file_and_empty_folder_are_named(tmp_path):
    with pytest.raises(MissingWeightsError, match="not found"):
        load_embedder("tiny", weights=tmp_path / "nope.safetensors")
    with pytest.raises(MissingWeightsError, match="no checkpoint in folder"):
        load_embedder("tiny", weights=tmp_path)


def test_unknown_embedder_and_unknown_tag_are_invalid_input():
    with pytest.raises(InvalidInputError, match="unknown frame embedder"):
        load_embedder("clip-vit-z")
    with pytest.raises(InvalidInputError, match="pretrained tag"):
        load_embedder("clip-vit-b-32", weights="not-a-tag")


def test_offline_without_cached_weights_says_what_to_download(tmp_path, child_env):
    code = (
        "from storymem_cli.memory.embed import load_embedder\n"
        "from storymem_cli.errors import MissingWeightsError\n"
        "try:\n    load_embedder('clip-vit-b-32')\n"
        "except MissingWeightsError as e:\n    print('MISSING', e)\n"
    )
    env = child_env(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), OMP_NUM_THREADS="1",
                    XDG_CACHE_HOME=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("MISSING")
    assert "huggingface.co/timm/vit_base_patch32_clip_224.openai" in out.stdout
    assert "local checkpoint" in out.stdout
