"""What one shot's denoising cost: its wall time, and how many expert forwards ran their blocks.

Plain torch hooks that only count: they change no number. The forward count is taken on the expert
itself (never compiled: ``--compile`` compiles the blocks). Whether a forward computed: MagCache's
own state says so; with the other caches it is seen inside the last block's feed-forward, which they
answer for when they skip (first-block skips the whole block, TaylorSeer predicts the feed-forward's
output), so a forward in which it did not run was skipped.
"""

from __future__ import annotations

import time
from typing import Any


class ShotStats:
    """Counts for the shot being denoised; ``start_shot`` before it, ``result`` after it."""

    def __init__(self) -> None:
        self.forwards = 0
        self.computed = 0
        self.counts_skips = False
        self.started: float | None = None
        self.ended: float | None = None
        self.device: Any = None

    def attach(self, transformer: Any, cached: bool) -> None:
        """Count ``transformer``'s forwards; with a step cache on, also those whose blocks computed."""
        from storymem_cli.models.magcache import computed_probe

        transformer.register_forward_pre_hook(self._on_forward)
        if not cached:
            return
        self.counts_skips = True
        probe = computed_probe(transformer)  # MagCache says itself whether a forward computed
        if probe is not None:
            transformer.register_forward_hook(lambda *_: self._on_computed() if probe() else None)
        else:
            transformer.blocks[-1].ffn.net[-1].register_forward_pre_hook(self._on_computed)

    def start_shot(self, device: Any) -> None:
        self.forwards = self.computed = 0
        self.started = self.ended = None
        self.device = device

    def _sync(self) -> float:
        import torch

        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # once at each end of a shot's denoising: the GPU's time, not the queue's
        return time.perf_counter()

    def _on_forward(self, *_: Any) -> None:
        if self.started is None:
            self.started = self._sync()
        self.forwards += 1

    def _on_computed(self, *_: Any) -> None:
        self.computed += 1

    def end_denoising(self) -> None:
        self.ended = self._sync()

    def result(self) -> dict[str, Any]:
        """For run.json: denoising seconds (first expert forward to the last step's end), expert forwards,
        and those a step cache skipped (0 without one)."""
        seconds = None if self.started is None or self.ended is None else round(self.ended - self.started, 4)
        skipped = self.forwards - self.computed if self.counts_skips else 0
        return {"denoise_s": seconds, "forwards": self.forwards, "forwards_skipped": skipped}
