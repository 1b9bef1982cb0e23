"""Frame embedder for keyframe selection: CLIP image features, batched, once per shot.

The paper (and release) use OpenAI CLIP ViT-B/32: open_clip ``ViT-B-32-quickgelu``
with the ``openai`` weights. ``tiny`` is a random CLIP of the same classes for
tests (fixed seed). Weights come from an open_clip tag (downloaded to the Hugging
Face cache), ``hf-hub:org/repo``, a local checkpoint file or a local folder.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from storymem_cli.errors import InvalidInputError
from storymem_cli.scoring.clip import TINY_CLIP_CONFIGS, build_clip_visual, embed_images, resolve_clip_checkpoint

if TYPE_CHECKING:
    import torch

# name -> (open_clip architecture, default weights; None = random from a fixed seed)
EMBEDDERS: dict[str, tuple[str, str | None]] = {
    "clip-vit-b-32": ("ViT-B-32-quickgelu", "openai"),  # the paper's CLIP (SPEC 7)
    "tiny": ("tiny-clip", None),  # tests and CPU smoke runs
}
TINY_SEED = 0


class FrameEmbedder:
    """CLIP image tower that maps uint8 frames to L2-normalised float32 embeddings."""

    def __init__(self, visual: torch.nn.Module, name: str, *, batch_size: int = 32):
        self.visual = visual
        self.name = name
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return int(self.visual.output_dim)

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) -> float32 (N, D), rows L2-normalised; one batched pass."""
        return embed_images(self.visual, frames, batch_size=self.batch_size, normalize=True)


def load_embedder(
    name: str = "clip-vit-b-32",
    weights: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    *,
    batch_size: int = 32,
) -> FrameEmbedder:
    """Build the frame embedder ``name`` (a key of EMBEDDERS or an open_clip model name).

    ``weights``: None = the name's default (``openai`` for CLIP ViT-B/32, random for
    ``tiny``), else an open_clip pretrained tag, ``hf-hub:org/repo``, a file or a folder.
    Raises MissingWeightsError when the weights are not here and cannot be fetched.
    """
    if name in EMBEDDERS:
        arch, default = EMBEDDERS[name]
    elif name in TINY_CLIP_CONFIGS:
        arch, default = name, None
    else:
        import open_clip

        if name not in open_clip.list_models():
            raise InvalidInputError(
                f"unknown frame embedder {name!r}",
                hint=f"choose one of {', '.join(EMBEDDERS)} or an open_clip model name (e.g. ViT-B-32-quickgelu)",
            )
        arch, default = name, "openai"
    source = weights if weights is not None else default
    checkpoint = None
    if source is not None:
        checkpoint = resolve_clip_checkpoint(arch, source, what=f"memory frame embedder ({arch})")
    visual = build_clip_visual(arch, checkpoint, seed=TINY_SEED, device=device)
    label = name if checkpoint is None else f"{name}:{os.fspath(source)}"
    return FrameEmbedder(visual, label, batch_size=batch_size)
