"""How much denoising work each shot of a story is (pure; torch-free).

A memory shot's transformer sequence is its own latent frames plus one latent frame per memory
keyframe, so the work grows with the memory: a story's first shot has none, and each shot adds at
most ``max_keyframes_per_shot`` (3) up to the bank's ``capacity`` (10). One expert forward costs
about ``forward_flops``: the linear layers grow with the tokens, self-attention with their square
(62% of an A14B forward at 10 memory frames). The ETA while rendering and the device check's story
projection weight shots by it instead of taking every shot at the full memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from storymem_cli.config import VAE_SPATIAL_STRIDE, VAE_TEMPORAL_STRIDE

PATCH = 2  # the Wan transformer's 1x2x2 patches


@dataclass(frozen=True)
class Width:
    """A Wan expert's sizes: model width, feed-forward width, layers, text tokens."""

    dim: int = 5120  # A14B
    ffn: int = 13824
    layers: int = 40
    text_tokens: int = 512


A14B_WIDTH = Width()


def latent_frames(frames: int) -> int:
    """pipeline.layout.latent_frame_count without importing torch (this module is torch-free)."""
    return (frames - 1) // VAE_TEMPORAL_STRIDE + 1


def shot_tokens(width: int, height: int, frames: int, memory_frames: int) -> int:
    """Tokens of one expert forward: (memory + shot latent frames) x latent patches per frame."""
    per_frame = (height // (VAE_SPATIAL_STRIDE * PATCH)) * (width // (VAE_SPATIAL_STRIDE * PATCH))
    return (latent_frames(frames) + memory_frames) * per_frame


def memory_growth(shots: int, capacity: int = 10, per_shot: int = 3, start: int = 0) -> list[int]:
    """The most memory frames each shot can be conditioned on: ``start`` (reference images) for the
    first, then at most ``per_shot`` more per finished shot, up to ``capacity``."""
    return [min(start + per_shot * shot, capacity) for shot in range(shots)]


def forward_flops(tokens: int, width: Width = A14B_WIDTH) -> dict[str, float]:
    """Multiply-adds x 2 of one expert forward at ``tokens``: self-attention's scores and weighted sum
    ("attention"), and the rest (projections, cross-attention to the text, feed-forward)."""
    d, n, text = width.dim, tokens, width.text_tokens
    attention = 4 * n * n * d
    linear = 2 * n * d * (4 * d) + 2 * n * d * (2 * d) + 2 * text * d * (2 * d) + 4 * n * text * d + 4 * n * d * width.ffn
    return {"attention": float(attention * width.layers), "other": float(linear * width.layers)}


def flops(tokens: int, width: Width = A14B_WIDTH) -> float:
    return sum(forward_flops(tokens, width).values())


def story_factor(tokens: Sequence[int], full_tokens: int, width: Width = A14B_WIDTH) -> float:
    """The story's denoising work as a fraction of every shot at ``full_tokens``."""
    return sum(flops(n, width) for n in tokens) / (len(tokens) * flops(full_tokens, width))


def remaining_seconds(done_s: Sequence[float], done_work: Sequence[float], left_work: Sequence[float]) -> float:
    """ETA: the seconds per unit of work so far, times the work left (plain mean when nothing is known)."""
    if not done_s:
        return 0.0
    if sum(done_work) <= 0:
        return sum(done_s) / len(done_s) * len(left_work)
    return sum(done_s) / sum(done_work) * sum(left_work)


def time_summary(shots: Sequence[dict]) -> str:
    """The end-of-render line from run.json's shot records: shots, wall time, denoising time, the
    tokens it went through and the expert forwards a step cache skipped."""
    total = sum(shot["timings"]["total_s"] for shot in shots)
    denoise = [shot["timings"].get("denoise_s") for shot in shots]
    forwards = sum(shot.get("forwards", 0) for shot in shots)
    skipped = sum(shot.get("forwards_skipped", 0) for shot in shots)
    tokens = [shot["tokens"] for shot in shots if "tokens" in shot]
    parts = [f"{len(shots)} shot(s) in {_duration(total)}"]
    if all(seconds is not None for seconds in denoise):
        parts.append(f"denoising {_duration(sum(denoise))}")  # type: ignore[arg-type]
    if tokens:
        parts.append(f"{min(tokens):,} to {max(tokens):,} tokens per forward")
    if forwards:
        parts.append(f"{skipped} of {forwards} expert forwards skipped")
    return ", ".join(parts)


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
