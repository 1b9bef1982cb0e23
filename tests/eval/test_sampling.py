"""VBench's 8-frame sampling. Expected indices are worked out by hand from the rule:
bounds = int(linspace(0, n, min(8, n) + 1)); index = (bounds[i] + bounds[i+1] - 1) // 2;
pad with the last index up to 8."""

from __future__ import annotations

import numpy as np
import pytest

from storymem_cli.eval.sampling import locate, vbench_frame_indices, viclip_input


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1, [0, 0, 0, 0, 0, 0, 0, 0]),  # one interval [0, 0], padded
        (7, [0, 1, 2, 3, 4, 5, 6, 6]),  # seven one-frame intervals, padded with 6
        (8, [0, 1, 2, 3, 4, 5, 6, 7]),
        # bounds 0,10,20,30,40,50,60,70,81 (10.125 steps truncated): middles of [0,9]..[70,80]
        (81, [4, 14, 24, 34, 44, 54, 64, 75]),
        # bounds every 125: middle of [0,124] is 62, of [125,249] is 187, ...
        (1000, [62, 187, 312, 437, 562, 687, 812, 937]),
    ],
)
def test_vbench_indices(n, expected):
    assert vbench_frame_indices(n) == expected


def test_zero_frames_is_an_error():
    with pytest.raises(ValueError, match="at least one frame"):
        vbench_frame_indices(0)


def test_locate_maps_story_indices_into_shots():
    # shots of 10, 5 and 20 frames: story frame 12 is shot 1 frame 2, frame 15 is shot 2 frame 0
    assert locate([0, 9, 10, 12, 15, 34], [10, 5, 20]) == [(0, 0), (0, 9), (1, 0), (1, 2), (2, 0), (2, 19)]


def test_viclip_input_shape_and_normalisation():
    frames = np.full((8, 30, 50, 3), 128, dtype=np.uint8)
    x = viclip_input(frames, size=28)
    assert tuple(x.shape) == (1, 8, 3, 28, 28)
    # a flat grey frame normalises to (0.502 - mean) / std per channel
    assert float(x[0, 0, 0, 5, 5]) == pytest.approx((128 / 255 - 0.48145466) / 0.26862954, abs=1e-4)
