"""Keyframe selection (SPEC 7, steps 3-4): a pure function of embeddings and usable flags.

Embeddings and quality scores are computed once per shot; every rescan at a lower
threshold only re-walks a precomputed similarity row, so lowering the threshold
costs microseconds (the release re-ran CLIP and HPSv3 for every 0.01 step).

Where the scan starts: at ``start`` (default 0), the first frame the caller
passes. The renderer passes the shot's own frames, already trimmed of the frames
MI2V / MM2V copy from the previous shot, so nothing before frame 0 belongs to
another shot. The release starts at frame 2, most likely to step over such copied
frames in its untrimmed output; with trimming that offset would only throw away
the shot's opening, and a poor opening frame is already rejected by the aesthetic
filter. ``start=2`` reproduces the release.

``cfg.selection == "first-frame"`` is the paper's ablation "w/o semantic
selection" (Table 2): every shot gives its first usable frame, with no novelty
scan and no dedupe against the bank, so memory holds the first frame of each shot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from storymem_cli.config import MemoryConfig


@dataclass(frozen=True)
class Selection:
    """What selection chose and why, for the record (memory.json, inspect-memory)."""

    indices: list[int]  # keyframes kept, in frame order
    threshold: float | None  # final novelty threshold (None when no frame was usable, or "first-frame")
    novelty: np.ndarray  # (N,) 1 - cosine to the latest keyframe when the frame was scanned; NaN if none yet
    candidates: list[int] = field(default_factory=list)  # keyframes before dedupe
    duplicates: list[int] = field(default_factory=list)  # dropped: too close to a bank entry
    rescans: int = 0  # how many times the threshold was lowered


def _scan(sim: np.ndarray, usable_idx: np.ndarray, threshold: float) -> tuple[list[int], np.ndarray]:
    """One forward scan: the first usable frame, then every usable frame whose cosine to the
    latest keyframe is below ``threshold``. Returns keyframes and each frame's novelty."""
    novelty = np.full(sim.shape[0], np.nan, dtype=np.float32)
    first = int(usable_idx[0])
    chosen = [first]
    for i in usable_idx[1:]:
        cos = sim[chosen[-1], i]
        novelty[i] = 1.0 - cos
        if cos < threshold:
            chosen.append(int(i))
    return chosen, novelty


def first_frame_selection(usable_idx: np.ndarray, n_frames: int) -> Selection:
    """The ablation: the first usable frame is the shot's only keyframe; nothing is compared."""
    first = [int(usable_idx[0])]
    return Selection(first, None, np.full(n_frames, np.nan, dtype=np.float32), candidates=first)


def select_with_record(
    embeddings: np.ndarray,
    usable: np.ndarray,
    bank_embeddings: np.ndarray | None,
    cfg: MemoryConfig,
    *,
    start: int = 0,
) -> Selection:
    """Keyframes of one shot plus the record of how they were chosen.

    ``embeddings``: (N, D) L2-normalised frame embeddings; ``usable``: (N,) bool from the
    aesthetic filter; ``bank_embeddings``: (M, D) of the active bank entries (or None; not
    looked at with ``cfg.selection == "first-frame"``). Unusable frames are never keyframes and
    never become the "latest keyframe".
    """
    emb = np.asarray(embeddings, dtype=np.float32)
    ok = np.asarray(usable, dtype=bool)
    if emb.ndim != 2 or ok.shape != (emb.shape[0],):
        raise ValueError(f"embeddings (N, D) and usable (N,) must agree, got {emb.shape} and {ok.shape}")
    usable_idx = np.flatnonzero(ok[start:]) + start
    if usable_idx.size == 0:
        return Selection([], None, np.full(emb.shape[0], np.nan, dtype=np.float32))
    if cfg.selection == "first-frame":
        return first_frame_selection(usable_idx, emb.shape[0])

    sim = emb @ emb.T
    rescans = 0
    while True:
        # Count steps instead of subtracting repeatedly: 0.9 - 7 * 0.01, not 0.9 - 0.01 - ... (float drift).
        threshold = round(cfg.novelty_threshold - rescans * cfg.threshold_step, 6)
        chosen, novelty = _scan(sim, usable_idx, threshold)
        # Terminates: once threshold <= -1 no cosine is below it and one keyframe remains.
        if len(chosen) <= cfg.max_keyframes_per_shot:
            break
        rescans += 1

    kept, dupes = chosen, []
    if bank_embeddings is not None and len(bank_embeddings) > 0:
        bank = np.asarray(bank_embeddings, dtype=np.float32)
        closest = (emb[chosen] @ bank.T).max(axis=1)
        kept = [i for i, c in zip(chosen, closest) if c <= cfg.dedupe_threshold]
        dupes = [i for i, c in zip(chosen, closest) if c > cfg.dedupe_threshold]
    return Selection(kept, threshold, novelty, candidates=chosen, duplicates=dupes, rescans=rescans)


def select_keyframes(
    embeddings: np.ndarray,
    usable: np.ndarray,
    bank_embeddings: np.ndarray | None,
    cfg: MemoryConfig,
    *,
    start: int = 0,
) -> list[int]:
    """Frame indices of the new keyframes of one shot (SPEC 7): see :func:`select_with_record`."""
    return select_with_record(embeddings, usable, bank_embeddings, cfg, start=start).indices
