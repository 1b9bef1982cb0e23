"""LAION aesthetic model: VBench preprocessing, head loading, tiny model determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from storymem_cli.errors import MissingWeightsError
from storymem_cli.scoring.clip import CLIP_MEAN, CLIP_STD, clip_preprocess
from storymem_cli.scoring.laion import HEAD_URL, LaionAesthetic, _load_head


def test_preprocess_resizes_short_side_and_crops_the_centre():
    # 32 x 96: left and right thirds red/blue, centre third green; a centre crop of
    # the short-side resize keeps only green.
    img = np.zeros((1, 32, 96, 3), dtype=np.uint8)
    img[:, :, :32] = (255, 0, 0)
    img[:, :, 32:64] = (0, 255, 0)
    img[:, :, 64:] = (0, 0, 255)
    x = clip_preprocess(img, 16)
    assert x.shape == (1, 3, 16, 16) and x.dtype == torch.float32
    expected = torch.tensor([(0 - CLIP_MEAN[0]) / CLIP_STD[0], (1 - CLIP_MEAN[1]) / CLIP_STD[1],
                             (0 - CLIP_MEAN[2]) / CLIP_STD[2]])
    centre = x[0, :, 4:12, 4:12].mean(dim=(1, 2))
    assert torch.allclose(centre, expected, atol=1e-3)


def test_preprocess_constant_image_is_mean_std_normalised():
    img = np.full((2, 50, 50, 3), 128, dtype=np.uint8)
    x = clip_preprocess(img, 24)
    for c in range(3):
        assert torch.allclose(x[:, c], torch.full_like(x[:, c], (128 / 255 - CLIP_MEAN[c]) / CLIP_STD[c]), atol=1e-5)


def test_tiny_scores_are_deterministic_and_batch_independent(frames):
    a = LaionAesthetic.tiny(seed=0)
    b = LaionAesthetic.tiny(seed=0)
    b.batch_size = 2
    sa, sb = a.score(frames), b.score(frames)
    assert sa.shape == (len(frames),) and sa.dtype == np.float32
    np.testing.assert_allclose(sa, sb, rtol=0, atol=1e-5)
    assert not np.allclose(sa, LaionAesthetic.tiny(seed=1).score(frames))


def test_score_is_linear_head_of_normalised_features(frames):
    model = LaionAesthetic.tiny(seed=3)
    with torch.no_grad():
        feats = model.visual(clip_preprocess(frames, 32))
        feats = feats / feats.norm(dim=-1, keepdim=True)
        expected = (feats @ model.head.weight.T + model.head.bias).squeeze(-1).numpy()
    np.testing.assert_allclose(model.score(frames), expected, atol=1e-5)


def test_empty_input_gives_empty_scores():
    assert LaionAesthetic.tiny().score(np.zeros((0, 8, 8, 3), dtype=np.uint8)).shape == (0,)


def test_rejects_non_uint8_frames(frames):
    with pytest.raises(ValueError, match="uint8"):
        LaionAesthetic.tiny().score(frames.astype(np.float32))


def test_head_file_round_trip(tmp_path):
    lin = torch.nn.Linear(768, 1)
    torch.save(lin.state_dict(), tmp_path / "head.pth")
    head = _load_head(tmp_path / "head.pth", 768)
    assert torch.equal(head.weight, lin.weight) and torch.equal(head.bias, lin.bias)


def test_head_of_wrong_shape_is_refused(tmp_path):
    torch.save(torch.nn.Linear(512, 1).state_dict(), tmp_path / "head.pth")
    with pytest.raises(MissingWeightsError, match="not a LAION aesthetic linear head"):
        _load_head(tmp_path / "head.pth", 768)


def test_missing_head_says_where_to_download(tmp_path):
    with pytest.raises(MissingWeightsError) as info:
        LaionAesthetic.load(head=tmp_path / "nope.pth")
    assert HEAD_URL in str(info.value)


def test_no_head_anywhere_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(MissingWeightsError) as info:
        LaionAesthetic.load()
    assert str(tmp_path / "cache" / "storymem") in str(info.value) and HEAD_URL in str(info.value)
