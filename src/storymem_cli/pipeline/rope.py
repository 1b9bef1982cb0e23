"""Temporal RoPE at arbitrary (negative, fractional) frame positions for Wan transformers (SPEC 3).

diffusers' ``WanRotaryPosEmbed`` slices precomputed tables with ``[:num_frames]``, so frame i always
sits at position i. :class:`StoryRotaryPosEmbed` is a drop-in subclass installed as ``transformer.rope``
(same module name, no weights: the tables are non-persistent buffers) whose temporal part is
computed for the positions the pipeline sets; height and width still come from the stock tables.
With no positions set it is the stock module.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

ROPE_THETA = 10000.0  # diffusers builds every Wan rope with its default theta


def _freqs_dtype() -> torch.dtype:
    # Same choice as diffusers, so integer positions give bit-identical tables.
    return torch.float32 if torch.backends.mps.is_available() else torch.float64


def temporal_cos_sin(positions: Sequence[float], dim: int, theta: float = ROPE_THETA) -> tuple[torch.Tensor, torch.Tensor]:
    """(len(positions), dim) cos and sin tables, the computation of ``get_1d_rotary_pos_embed`` at any positions."""
    dtype = _freqs_dtype()
    pos = torch.tensor(list(positions), dtype=dtype)
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=dtype) / dim))
    angles = torch.outer(pos, freqs)
    cos = angles.cos().repeat_interleave(2, dim=1).float()
    sin = angles.sin().repeat_interleave(2, dim=1).float()
    return cos, sin


class StoryRotaryPosEmbed(WanRotaryPosEmbed):
    """Wan's 3D RoPE with settable temporal positions; the result is cached per layout."""

    def __init__(self, attention_head_dim: int, patch_size: tuple[int, int, int], max_seq_len: int):
        super().__init__(attention_head_dim, patch_size, max_seq_len)
        self.frame_positions: tuple[float, ...] | None = None
        self.memory_frames = 0  # how many of those frames lead as memory (the first-block cache measures the rest)
        self._cache_key: tuple | None = None
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def replacing(cls, stock: WanRotaryPosEmbed) -> StoryRotaryPosEmbed:
        module = cls(stock.attention_head_dim, tuple(stock.patch_size), stock.max_seq_len)
        # Same device and dtype as the tables it replaces (fp32 unless someone cast the model with .to()).
        return module.to(device=stock.freqs_cos.device, dtype=stock.freqs_cos.dtype)

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.frame_positions is None:
            return super().forward(hidden_states)
        _, _, num_frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.patch_size
        ppf, pph, ppw = num_frames // p_t, height // p_h, width // p_w
        if len(self.frame_positions) != ppf:
            raise ValueError(
                f"rope frame_positions has {len(self.frame_positions)} entries but the latent video has {ppf} frames"
            )
        key = (self.frame_positions, pph, ppw, hidden_states.device)
        if self._cache_key != key:
            self._cache = self._tables(ppf, pph, ppw, hidden_states.device)
            self._cache_key = key
        return self._cache

    def _tables(self, ppf: int, pph: int, ppw: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        split = [self.t_dim, self.h_dim, self.w_dim]
        t_cos, t_sin = temporal_cos_sin(self.frame_positions, self.t_dim)
        out = []
        for t_table, table in ((t_cos, self.freqs_cos), (t_sin, self.freqs_sin)):
            # The stock tables are buffers that may sit on another device than the activations
            # (group offloading keeps them on the CPU between calls): every part goes to ``device``.
            _, h_table, w_table = (part.to(device) for part in table.split(split, dim=1))
            parts = [
                t_table.to(device=device, dtype=table.dtype).view(ppf, 1, 1, -1).expand(ppf, pph, ppw, -1),
                h_table[:pph].view(1, pph, 1, -1).expand(ppf, pph, ppw, -1),
                w_table[:ppw].view(1, 1, ppw, -1).expand(ppf, pph, ppw, -1),
            ]
            out.append(torch.cat(parts, dim=-1).reshape(1, ppf * pph * ppw, 1, -1))
        return out[0], out[1]


def install_story_rope(transformer: torch.nn.Module) -> StoryRotaryPosEmbed:
    """Replace ``transformer.rope`` by a :class:`StoryRotaryPosEmbed` (idempotent); no weight changes."""
    if not isinstance(transformer.rope, StoryRotaryPosEmbed):
        transformer.rope = StoryRotaryPosEmbed.replacing(transformer.rope)
    return transformer.rope


@contextmanager
def rope_positions(
    transformers: Iterable[torch.nn.Module | None], positions: Sequence[float], memory_frames: int = 0
) -> Iterator[None]:
    """Set the temporal positions on every given transformer's rope for the duration of a call, the
    first ``memory_frames`` of them memory.

    A transformer without the story rope gets it here (training uses bare transformers). Offloading
    hooks track the modules present when they are attached, so a pipeline installs it at build time
    (``StoryMemM2VPipeline.register_modules``), before any offloading.
    """
    ropes = [install_story_rope(t) for t in transformers if t is not None]
    for rope in ropes:
        rope.frame_positions = tuple(float(p) for p in positions)
        rope.memory_frames = memory_frames
    try:
        yield
    finally:
        for rope in ropes:
            rope.frame_positions, rope.memory_frames = None, 0
