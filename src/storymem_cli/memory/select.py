"""Keyframe selection (SPEC 7, steps 3-4): a pure function of embeddings and usable flags.

Embeddings and quality scores are computed once per shot; every rescan at a lower
threshold only re-walks a precomputed similarity row, so lowering the threshold
costs microseconds (the release re-ran CLIP and HPSv3 for every 0.01 step).

Which frames are scanned (``cfg.selection``):

- ``"semantic"`` (default): the frames the caller passes, all of them. The renderer passes
  the shot's own footage, already trimmed of the frames MI2V / MM2V copy from the previous
  shot; the first usable frame is the first keyframe and the scan walks every later frame.
- ``"release"``: the authors' release exactly. The renderer passes the shot's untrimmed
  output (copies included); the first usable frame is the first keyframe, and the novelty
  scan starts at frame RELEASE_SCAN_START (2) whatever that first keyframe was: frame 1 is
  never compared (it is a keyframe only when frame 0 is unusable), and frames copied from
  the previous shot can become keyframes. Threshold, rescans and dedupe are the same in
  both modes.

``cfg.selection == "first-frame"`` is the paper's ablation "w/o semantic
selection" (Table 2): every shot gives its first usable frame, with no novelty
scan and no dedupe against the bank, so memory holds the first frame of each shot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from storymem_cli.config import MemoryConfig

RELEASE_SCAN_START = 2  # extract_keyframes.py: `for i in range(2, ...)` after the first keyframe


@dataclass(frozen=True)
class Selection:
    """What selection chose and why, for the record (memory.json, inspect-memory)."""

    indices: list[int]  # keyframes kept, in frame order
    threshold: float | None  # final novelty threshold (None when no frame was usable, or "first-frame")
    novelty: np.ndarray  # (N,) 1 - cosine to the latest keyframe when the frame was scanned; NaN if none yet
    candidates: list[int] = field(default_factory=list)  # keyframes before dedupe
    duplicates: list[int] = field(default_factory=list)  # dropped: too close to a bank entry
    rescans: int = 0  # how many times the threshold was lowered


def _scan(sim: np.ndarray, first: int, scanned: np.ndarray, threshold: float) -> tuple[list[int], np.ndarray]:
    """One forward scan: keyframe ``first``, then every frame of ``scanned`` (usable, in order)
    whose cosine to the latest keyframe is below ``threshold``. Returns keyframes and each
    scanned frame's novelty."""
    novelty = np.full(sim.shape[0], np.nan, dtype=np.float32)
    chosen = [first]
    for i in scanned:
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
    usable_idx = np.flatnonzero(ok)
    if usable_idx.size == 0:
        return Selection([], None, np.full(emb.shape[0], np.nan, dtype=np.float32))
    if cfg.selection == "first-frame":
        return first_frame_selection(usable_idx, emb.shape[0])

    first = int(usable_idx[0])
    scan_from = max(RELEASE_SCAN_START, first + 1) if cfg.selection == "release" else first + 1
    scanned = usable_idx[usable_idx >= scan_from]
    # float64: a cosine a hair from the threshold falls on the same side whichever way it is summed.
    emb64 = emb.astype(np.float64)
    sim = emb64 @ emb64.T
    rescans = 0
    while True:
        # Count steps instead of subtracting repeatedly: 0.9 - 7 * 0.01, not 0.9 - 0.01 - ... (float drift).
        threshold = round(cfg.novelty_threshold - rescans * cfg.threshold_step, 6)
        chosen, novelty = _scan(sim, first, scanned, threshold)
        # Terminates: once threshold <= -1 no cosine is below it and one keyframe remains.
        if len(chosen) <= cfg.max_keyframes_per_shot:
            break
        rescans += 1

    kept, dupes = chosen, []
    if bank_embeddings is not None and len(bank_embeddings) > 0:
        bank = np.asarray(bank_embeddings, dtype=np.float64)
        closest = (emb64[chosen] @ bank.T).max(axis=1)
        kept = [i for i, c in zip(chosen, closest) if c <= cfg.dedupe_threshold]
        dupes = [i for i, c in zip(chosen, closest) if c > cfg.dedupe_threshold]
    return Selection(kept, threshold, novelty, candidates=chosen, duplicates=dupes, rescans=rescans)


def select_keyframes(
    embeddings: np.ndarray,
    usable: np.ndarray,
    bank_embeddings: np.ndarray | None,
    cfg: MemoryConfig,
) -> list[int]:
    """Frame indices of the new keyframes of one shot (SPEC 7): see :func:`select_with_record`."""
    return select_with_record(embeddings, usable, bank_embeddings, cfg).indices
