"""How frames become CLIP inputs: the whole frame for memory (the release), the centre for the metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from storymem_cli.memory.embed import load_embedder
from storymem_cli.scoring.clip import CLIP_MEAN, CLIP_STD, stretch_preprocess
from storymem_cli.scoring.downsize import MAX_PIXELS, release_downsize, release_size
from storymem_cli.scoring.laion import LaionAesthetic

H, W = 480, 832  # Wan2.2 480p: a centre square would keep only 58% of the width


def edge_frames() -> np.ndarray:
    """A blank frame, then the same frame with a red figure in the left 10%, then in the right 10%."""
    frames = np.full((3, H, W, 3), 90, dtype=np.uint8)
    edge = W // 10
    frames[1, 100:400, :edge] = (220, 30, 30)
    frames[2, 100:400, -edge:] = (220, 30, 30)
    return frames


def test_the_memory_embedder_sees_the_left_and_right_edges():
    emb = load_embedder("tiny").embed(edge_frames())
    for i in (1, 2):
        assert float(emb[0] @ emb[i]) < 1 - 1e-4, i
    # Control: CLIP's usual centre crop cannot tell these frames from the blank one.
    cropped = load_embedder("tiny", resize="crop").embed(edge_frames())
    np.testing.assert_allclose(cropped[1:], cropped[[0, 0]], atol=1e-6)


def test_the_aesthetic_metric_keeps_the_centre_crop():
    # VBench's recipe (SPEC 9) is resize-and-crop: edge content must not change the score.
    scores = LaionAesthetic.tiny().score(edge_frames())
    np.testing.assert_allclose(scores[1:], scores[[0, 0]], atol=1e-6)


def test_release_size_of_a_480p_frame():
    assert release_size(H, W) == (336, 588)  # the release's copy of a 832x480 frame
    assert release_size(W, H) == (588, 336)
    h, w = release_size(720, 1280)
    assert h % 28 == 0 and w % 28 == 0 and h * w <= MAX_PIXELS and abs(w / h - 1280 / 720) < 0.05


def test_release_downsize_keeps_uint8_and_the_whole_frame():
    frames = np.zeros((2, H, W, 3), dtype=np.uint8)
    frames[:, :, : W // 2] = 200
    small = release_downsize(frames)
    assert small.dtype == torch.uint8 and tuple(small.shape) == (2, 3, 336, 588)
    assert (small[:, :, :, :280] == 200).all() and (small[:, :, :, 308:] == 0).all()


def test_stretch_preprocess_squeezes_the_whole_frame_into_the_square():
    # Left third red, middle green, right third blue: all three survive, side by side.
    img = np.zeros((1, H, 840, 3), dtype=np.uint8)
    img[:, :, :280] = (255, 0, 0)
    img[:, :, 280:560] = (0, 255, 0)
    img[:, :, 560:] = (0, 0, 255)
    x = stretch_preprocess(img, 24)
    assert x.shape == (1, 3, 24, 24) and x.dtype == torch.float32
    mean, std = torch.tensor(CLIP_MEAN), torch.tensor(CLIP_STD)
    for cols, colour in ((slice(1, 7), (1, 0, 0)), (slice(9, 15), (0, 1, 0)), (slice(17, 23), (0, 0, 1))):
        expected = (torch.tensor(colour, dtype=torch.float32) - mean) / std
        assert torch.allclose(x[0, :, :, cols].mean(dim=(1, 2)), expected, atol=1e-3), colour


@pytest.mark.parametrize("resize", ["stretch", "crop"])
def test_the_embedder_name_records_how_frames_were_resized(resize):
    # memory.json keeps the name with every embedding: a bank embedded the other way is re-embedded.
    assert load_embedder("tiny", resize=resize).name == f"tiny/{resize}"
