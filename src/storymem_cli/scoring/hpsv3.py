"""HPSv3 as the keyframe quality filter, scored the way the authors' release scores it.

- **Our own stack.** The authors' ``hpsv3`` package pins transformers 4.45 and cannot be
  installed beside storymem; its checkpoint is loaded here into transformers 5's Qwen2-VL
  (hpsv3_model.py) and shown exactly the package's inputs (hpsv3_inputs.py).
  ``benchmarks/hpsv3_oracle.py`` scores the same frames with the package itself on a tiny
  random checkpoint in the authors' layout and requires the same scores.
- **Empty prompt.** HPSv3 is a prompt-conditioned reward model; the release asks it about
  every frame with the prompt "" and chose its threshold 3.0 for that. With the shot prompt
  the score would also measure prompt following, on a scale the threshold was not set for.
- **The release's small copy.** Frames are first shrunk to about 200k pixels (downsize.py),
  then handed to HPSv3 (whose own preprocessing resizes them again, as in the release).
- **Off the GPU between shots.** The reward model (Qwen2-VL-7B, ~17 GB in bf16) is loaded once
  onto the CPU; it moves to its device only while it scores a shot's frames and goes back
  before the next shot is generated, so the Wan experts never share the GPU with it.
  The release instead built a new one for every shot.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from storymem_cli.scoring.downsize import release_downsize

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from storymem_cli.scoring.hpsv3_files import HPSv3Files

PARK_DEVICE = "cpu"  # where the model waits while the video model runs
BATCH_SIZE = 8  # frames per reward call; one frame is 286 image tokens after HPSv3's resize
PROMPT = ""  # the release's prompt for every frame


class HPSv3Reward:
    """The reward model with its processor: ``reward(images, prompts)`` -> (N, 2) float32 mu, sigma."""

    def __init__(self, model: Any, processor: Any):
        from storymem_cli.scoring.hpsv3_inputs import reward_token_id

        self.model = model
        self.processor = processor
        self.reward_token_id = reward_token_id(processor)
        self.device = "cpu"

    @classmethod
    def load(cls, files: HPSv3Files, *, dtype: torch.dtype | None = None) -> HPSv3Reward:
        """From the checkpoint and the base model's small files, on the CPU (``dtype`` None: as stored)."""
        import json

        from storymem_cli.scoring.hpsv3_inputs import load_processor
        from storymem_cli.scoring.hpsv3_model import load_reward_model

        config = json.loads((files.base / "config.json").read_text(encoding="utf-8"))
        processor = load_processor(files.base)
        model = load_reward_model(files.checkpoint, config, dtype=dtype)
        reward = cls(model, processor)
        rows = model.model.language_model.embed_tokens.num_embeddings
        if reward.reward_token_id != rows - 1:
            from storymem_cli.errors import InvalidInputError

            raise InvalidInputError(
                f"{files.checkpoint} has {rows} token embeddings, but the tokenizer in {files.base} puts "
                f"<|Reward|> at id {reward.reward_token_id} (it must be the last one)",
                hint="the base model's small files must be Qwen/Qwen2-VL-7B-Instruct's",
            )
        return reward

    def to(self, device: str) -> HPSv3Reward:
        self.model.to(device)
        self.device = device
        return self

    def reward(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        import torch

        from storymem_cli.scoring.hpsv3_inputs import make_batch

        batch = {k: v.to(self.device) for k, v in make_batch(self.processor, images, prompts).items()}
        with torch.inference_mode():
            return self.model(**batch, reward_token_id=self.reward_token_id).float().cpu()


class HPSv3Scorer:
    """Callable ``frames -> scores`` around an :class:`HPSv3Reward`.

    ``device`` is where it scores; between calls its model sits on PARK_DEVICE.
    """

    def __init__(self, reward: Any, device: str, *, batch_size: int = BATCH_SIZE):
        self.reward = reward
        self.device = device
        self.batch_size = batch_size
        self._move(PARK_DEVICE)

    def _move(self, device: str) -> None:
        self.reward.to(device)

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
                rewards = self.reward.reward(images, [PROMPT] * len(images))
                out.extend(float(r) for r in rewards[:, 0])
        return np.asarray(out, dtype=np.float32)
