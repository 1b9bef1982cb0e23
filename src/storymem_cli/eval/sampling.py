"""Which frames ViCLIP looks at, and how they are prepared (VBench's recipe, SPEC 9)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


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


def locate(global_indices: list[int], lengths: list[int]) -> list[tuple[int, int]]:
    """Indices into the concatenation of clips of `lengths` -> (clip, frame in clip)."""
    starts = np.concatenate([[0], np.cumsum(lengths)])
    out = []
    for g in global_indices:
        clip = int(np.searchsorted(starts, g, side="right") - 1)
        out.append((clip, int(g - starts[clip])))
    return out


def viclip_input(frames: np.ndarray, size: int = 224) -> torch.Tensor:
    """8 already-sampled uint8 frames (T, H, W, 3) -> ViCLIP's input (1, T, 3, size, size):
    the same short-side bicubic resize, centre crop and CLIP mean/std as the aesthetic score."""
    from storymem_cli.scoring.clip import clip_preprocess

    return clip_preprocess(frames, size).unsqueeze(0)
