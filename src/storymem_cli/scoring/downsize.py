"""Frames shrunk the way the authors' release shrinks them before judging them.

The release (``extract_keyframes.py``) makes one smaller copy of every decoded frame and
gives that copy to both HPSv3 and CLIP: sides rounded to multiples of 28 (Qwen2-VL's
image grid), at most 256 x 28 x 28 = 200,704 pixels, aspect ratio kept (832x480 becomes
588x336), resized bilinearly with antialiasing on the uint8 frames. Doing the same here
keeps HPSv3's threshold 3.0 and the 0.9 similarity thresholds on the inputs they were
chosen on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

FACTOR = 28  # Qwen2-VL: 14-pixel patches merged 2x2
MIN_PIXELS = 48 * FACTOR * FACTOR  # the release's VIDEO_MIN_PIXELS (25,088)
MAX_PIXELS = 256 * FACTOR * FACTOR  # the release's cap: 256 image tokens (200,704 pixels)


def release_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) of the release's scoring copy of a height x width frame."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    h, w = smart_resize(height, width, factor=FACTOR, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    return int(h), int(w)


def release_downsize(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames (N, H, W, 3) -> uint8 tensor (N, 3, h, w) on the CPU, h x w = :func:`release_size`.

    Always on the CPU: torch resizes uint8 with antialiasing only there, and doing it in uint8
    rounds the result exactly as the release's copy was rounded.
    """
    import torch

    frames = np.ascontiguousarray(frames)
    # A read-only array (bank images are) is copied: torch warns about sharing its memory.
    x = torch.from_numpy(frames) if frames.flags.writeable else torch.tensor(frames)
    x = x.permute(0, 3, 1, 2).contiguous()
    size = release_size(int(x.shape[2]), int(x.shape[3]))
    if tuple(x.shape[2:]) == size:
        return x
    return torch.nn.functional.interpolate(x, size=list(size), mode="bilinear", antialias=True)
