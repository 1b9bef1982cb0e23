"""Frame embedders for keyframe selection: image features, batched, once per shot.

The paper (and release) use OpenAI CLIP ViT-B/32: open_clip ``ViT-B-32-quickgelu``
with the ``openai`` weights, fed the whole frame squeezed to a square as the release
does (``resize="stretch"``, scoring/clip.py); ``"crop"``, CLIP's usual centre square,
would leave the left and right fifths of a 832x480 frame out of novelty and dedupe. ``tiny`` is a random CLIP of the same classes for
tests (fixed seed). Weights come from an open_clip tag (downloaded to the Hugging
Face cache), ``hf-hub:org/repo``, a local checkpoint file or a local folder.

``pixels`` is no network at all: the frame itself, shrunk to 16x16. It is for
small synthetic worlds (the toy model) where no trained CLIP exists: a random
tiny CLIP maps every frame to nearly the same vector, while raw pixels tell a
beach from a snowfield and a frame from another moment of the same clip.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol

import numpy as np

from storymem_cli.errors import InvalidInputError
from storymem_cli.scoring.clip import (
    TINY_CLIP_CONFIGS,
    Resize,
    build_clip_visual,
    embed_images,
    resolve_clip_checkpoint,
)

if TYPE_CHECKING:
    import torch

# name -> (open_clip architecture, default weights; None = random from a fixed seed)
CLIP_EMBEDDERS: dict[str, tuple[str, str | None]] = {
    "clip-vit-b-32": ("ViT-B-32-quickgelu", "openai"),  # the paper's CLIP (SPEC 7)
    "tiny": ("tiny-clip", None),  # tests and CPU smoke runs
}
PIXELS = "pixels"  # the frame's own pixels at PIXEL_GRID x PIXEL_GRID (toy worlds)
EMBEDDERS: tuple[str, ...] = (*CLIP_EMBEDDERS, PIXELS)  # every name a preset may give
TINY_SEED = 0
# 16x16 keeps the layout of a 64x64 toy frame (4x4 pixels per cell: sky, ground, a sprite's
# blob and colour) and drops pixel noise; 768 values per frame.
PIXEL_GRID = 16


class Embedder(Protocol):
    """What keyframe selection and the memory bank need from an embedder."""

    name: str

    @property
    def dim(self) -> int: ...

    def embed(self, frames: np.ndarray) -> np.ndarray: ...


class FrameEmbedder:
    """CLIP image tower that maps uint8 frames to L2-normalised float32 embeddings.

    ``name`` goes into memory.json with every embedding; it should say how frames were
    resized, so that a bank embedded another way is embedded again (see load_embedder).
    """

    def __init__(self, visual: torch.nn.Module, name: str, *, batch_size: int = 32, resize: Resize = "stretch"):
        self.visual = visual
        self.name = name
        self.batch_size = batch_size
        self.resize = resize

    @property
    def dim(self) -> int:
        return int(self.visual.output_dim)

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) -> float32 (N, D), rows L2-normalised; one batched pass."""
        return embed_images(self.visual, frames, batch_size=self.batch_size, normalize=True, resize=self.resize)


def area_weights(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) matrix averaging each output cell over the input pixels it covers
    (fractions of a pixel at cell borders count by their share): area resampling, any sizes."""
    edges = np.arange(size_out + 1, dtype=np.float64) * (size_in / size_out)
    left, right = edges[:-1, None], edges[1:, None]
    pixels = np.arange(size_in, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(right, pixels + 1) - np.maximum(left, pixels), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


class PixelEmbedder:
    """Frames resized to PIXEL_GRID x PIXEL_GRID by area averaging, scaled to [-1, 1], flattened
    and L2-normalised. Numpy only; deterministic; any frame size."""

    name = PIXELS

    def __init__(self, grid: int = PIXEL_GRID):
        self.grid = grid

    @property
    def dim(self) -> int:
        return self.grid * self.grid * 3

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) -> float32 (N, grid * grid * 3), rows L2-normalised."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (N, H, W, 3), got {frames.dtype} {frames.shape}")
        rows = area_weights(frames.shape[1], self.grid)
        cols = area_weights(frames.shape[2], self.grid)
        small = np.zeros((len(frames), self.grid, self.grid, 3))
        # Frame by frame: a float copy of a whole 81-frame shot at 832x480 would take 0.8 GB.
        for i, frame in enumerate(frames):
            small[i] = np.einsum("yh,hwc,xw->yxc", rows, frame.astype(np.float64), cols, optimize=True)
        vectors = (small / 127.5 - 1.0).reshape(len(frames), -1)
        # A frame of uniform mid-grey is the zero vector: it stays zero (cosine 0 to everything).
        norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return (vectors / norms).astype(np.float32)


def load_embedder(
    name: str = "clip-vit-b-32",
    weights: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    *,
    batch_size: int = 32,
    resize: Resize = "stretch",
) -> Embedder:
    """Build the frame embedder ``name`` (one of EMBEDDERS or an open_clip model name).

    ``weights``: None = the name's default (``openai`` for CLIP ViT-B/32, random for
    ``tiny``), else an open_clip pretrained tag, ``hf-hub:org/repo``, a file or a folder.
    ``resize``: how CLIP sees a frame, "stretch" (the whole frame, as the release) or "crop"
    (the centre square). ``pixels`` has no weights and ignores ``device``, ``batch_size`` and
    ``resize`` (it always averages the whole frame).
    Raises MissingWeightsError when the weights are not here and cannot be fetched.
    """
    if name == PIXELS:
        if weights is not None:
            raise InvalidInputError(
                f"the {PIXELS!r} frame embedder has no weights, got {os.fspath(weights)!r}",
                hint="leave the weights out, or name a CLIP embedder",
            )
        return PixelEmbedder()
    if name in CLIP_EMBEDDERS:
        arch, default = CLIP_EMBEDDERS[name]
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
    # Before "stretch" existed every CLIP bank was embedded cropped under the bare label: a new
    # label makes the bank embed those entries again instead of comparing crops with stretches.
    label = f"{label}/{resize}"
    return FrameEmbedder(visual, label, batch_size=batch_size, resize=resize)
