"""Which frames the metrics look at, and how they are prepared (VBench's recipe, SPEC 9)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# CLIP's normalisation, used by both ViCLIP and the CLIP ViT-L/14 behind the aesthetic head.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def vbench_frame_indices(n: int, num_frames: int = 8) -> list[int]:
    """VBench's "middle" sampling: `num_frames` indices into a clip of `n` frames.

    Split the clip into min(num_frames, n) equal intervals (``linspace(0, n, k + 1)``
    truncated to integers), take the middle frame of each, and pad with the last index
    when the clip has fewer frames than `num_frames`.
    """
    if n < 1:
        raise ValueError(f"a clip needs at least one frame, got n={n}")
    k = min(num_frames, n)
    bounds = np.linspace(0, n, k + 1).astype(int)
    picked = [int((bounds[i] + bounds[i + 1] - 1) // 2) for i in range(k)]
    return picked + [picked[-1]] * (num_frames - k)


def clip_transform(frames: np.ndarray, size: int = 224) -> "torch.Tensor":
    """uint8 (F, H, W, 3) -> float32 (F, 3, size, size): bicubic short side to `size`,
    centre crop, /255, CLIP mean/std. Resizes the uint8 tensor without antialiasing,
    as VBench's `clip_transform` does."""
    import torch
    from torchvision.transforms.v2 import functional as TF

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    x = TF.resize(x, size, interpolation=TF.InterpolationMode.BICUBIC, antialias=False)
    x = TF.center_crop(x, [size, size])
    x = x.float().div(255.0)
    return TF.normalize(x, CLIP_MEAN, CLIP_STD)


def viclip_input(frames: np.ndarray, size: int = 224, num_frames: int = 8) -> "torch.Tensor":
    """A clip's frames -> ViCLIP's input (1, num_frames, 3, size, size)."""
    idx = vbench_frame_indices(len(frames), num_frames)
    return clip_transform(frames[idx], size).unsqueeze(0)
