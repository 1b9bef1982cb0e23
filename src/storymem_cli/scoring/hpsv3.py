"""HPSv3 as the keyframe quality filter, scored the way the authors' release scores it.

- **Empty prompt.** HPSv3 is a prompt-conditioned reward model; the release asks it about
  every frame with the prompt "" and chose its threshold 3.0 for that. With the shot prompt
  the score would also measure prompt following, on a scale the threshold was not set for.
- **The release's small copy.** Frames are first shrunk to about 200k pixels (downsize.py),
  then handed to HPSv3 (whose own processor resizes them again, as in the release).
- **Off the GPU between shots.** The reward model (Qwen2-VL-7B, ~17 GB) is loaded once and
  kept on the CPU; it moves to its device only while it scores a shot's frames and goes back
  before the next shot is generated, so the Wan experts never share the GPU with it.
  The release instead built a new one for every shot.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from storymem_cli.scoring.downsize import release_downsize

PARK_DEVICE = "cpu"  # where the model waits while the video model runs
BATCH_SIZE = 8  # frames per reward call; one 200k-pixel frame is 256 image tokens
PROMPT = ""  # the release's prompt for every frame


class HPSv3Scorer:
    """Callable ``frames -> scores`` around an ``hpsv3.HPSv3RewardInferencer``.

    ``device`` is where it scores; between calls its model sits on PARK_DEVICE.
    """

    def __init__(self, inferencer: Any, device: str, *, batch_size: int = BATCH_SIZE):
        self.inferencer = inferencer
        self.device = device
        self.batch_size = batch_size
        self._move(PARK_DEVICE)

    def _move(self, device: str) -> None:
        # The inferencer moves its inputs to ``.device``: keep it with the model.
        self.inferencer.model.to(device)
        self.inferencer.device = device

    @contextmanager
    def on_device(self) -> Iterator[None]:
        """The model on its scoring device inside the block, parked again after it (also on error)."""
        self._move(self.device)
        try:
            yield
        finally:
            self._move(PARK_DEVICE)
            if str(self.device).startswith("cuda"):
                import torch

                torch.cuda.empty_cache()  # hand the freed blocks back for the experts

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames (N, H, W, 3) -> float32 (N,) HPSv3 mu (the reward's mean; sigma is dropped)."""
        from PIL import Image

        if len(frames) == 0:
            return np.zeros((0,), dtype=np.float32)
        small = release_downsize(frames).permute(0, 2, 3, 1).numpy()
        out: list[float] = []
        with self.on_device():
            for start in range(0, len(small), self.batch_size):
                images = [Image.fromarray(f) for f in small[start : start + self.batch_size]]
                rewards = self.inferencer.reward(prompts=[PROMPT] * len(images), image_paths=images)
                out.extend(float(r) for r in rewards[:, 0].float().cpu())
        return np.asarray(out, dtype=np.float32)
