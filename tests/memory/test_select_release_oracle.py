"""``--keyframes release`` against an independent re-implementation of the release's extraction.

The oracle follows the description of the authors' extract_keyframes.py (not storymem's code):
frame 0 onwards, the first frame that passes the quality filter is the first keyframe; the
novelty scan then walks frames 2, 3, ... and takes a usable frame whose cosine to the latest
keyframe is below the threshold; the threshold starts at 0.9 and drops by 0.01 (subtracted, as
the release does) for as long as more than 3 keyframes come out; a keyframe whose cosine to a
memory entry is above 0.9 is dropped.
"""

from __future__ import annotations

import numpy as np

from storymem_cli.config import MemoryConfig
from storymem_cli.memory.select import select_with_record

SHOTS = 600


def release_oracle(emb: np.ndarray, usable: np.ndarray, bank: np.ndarray) -> list[int]:
    n = len(emb)
    frames = emb.astype(np.float64)
    gram = frames @ frames.T  # every frame-to-frame cosine, once: the scan below repeats per threshold

    def extract(threshold: float) -> list[int]:
        first = 0
        while not usable[first]:
            first += 1
            if first >= n:
                return []
        keys, last = [first], first
        for i in range(2, n):
            if gram[last, i] < threshold and usable[i]:
                keys.append(i)
                last = i
        return keys

    threshold = 0.9
    while True:
        keys = extract(threshold)
        if len(keys) > 3:
            threshold -= 0.01
        else:
            break
    to_bank = frames @ bank.astype(np.float64).T
    return [k for k in keys if not any(to_bank[k] > 0.9)]


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def random_shot(g: np.random.Generator, dim: int = 48) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings of an untrimmed shot made of runs of similar frames, its usable flags and a bank.

    Runs: the camera holds (tiny noise), pans (a slow random walk) or cuts (a new direction, or a
    neighbour of the last one so that similarities sit near the thresholds). MI2V / MM2V shots
    start with 1 or 5 frames of another run (the copies of the previous shot's end).
    """
    n = int(g.choice([9, 17, 33, 49, 81], p=[0.1, 0.15, 0.15, 0.2, 0.4]))
    centre = unit(g.normal(size=dim))
    rows: list[np.ndarray] = []
    while len(rows) < n:
        length = int(g.integers(2, 25))
        if g.random() < 0.5:  # a neighbour: cosine about 0.8-0.97 to the last run
            c = float(g.uniform(0.8, 0.97))
            side = unit(g.normal(size=dim))
            side = unit(side - (side @ centre) * centre)
            centre = unit(c * centre + np.sqrt(1 - c * c) * side)
        else:
            centre = unit(g.normal(size=dim))
        drift = float(g.choice([0.0, 0.01, 0.04]))  # still, slow pan, fast pan
        point = centre.copy()
        for _ in range(length):
            point = unit(point + drift * g.normal(size=dim))
            rows.append(unit(point + 0.005 * g.normal(size=dim)))
    copies = int(g.choice([0, 1, 5], p=[0.5, 0.3, 0.2]))
    if copies:
        previous = unit(g.normal(size=dim))
        rows[:copies] = [unit(previous + 0.01 * g.normal(size=dim)) for _ in range(copies)]
    emb = np.asarray(rows[:n], dtype=np.float32)

    kind = g.random()
    usable = np.ones(n, dtype=bool)
    if kind < 0.1:  # nothing passes the filter
        usable[:] = False
    elif kind < 0.5:  # blurry stretches: runs of unusable frames, often at the start
        for _ in range(int(g.integers(1, 4))):
            start = 0 if g.random() < 0.4 else int(g.integers(0, n))
            usable[start : start + int(g.integers(1, 12))] = False
    elif kind < 0.7:  # a noisy scorer: frames fail one by one
        usable = g.random(n) > 0.3

    bank_rows = [unit(g.normal(size=dim)) for _ in range(int(g.integers(0, 6)))]
    for i in g.choice(n, size=int(g.integers(0, 3)), replace=False):  # already remembered, nearly
        bank_rows.append(unit(emb[i] + float(g.choice([0.005, 0.02, 0.05])) * g.normal(size=dim)))
    bank = np.asarray(bank_rows, dtype=np.float32).reshape(-1, dim)
    return emb, usable, bank


def test_release_mode_picks_the_frames_the_release_picks():
    g = np.random.default_rng(2021)
    release, default = MemoryConfig(selection="release"), MemoryConfig()
    seen = {"no usable frame": 0, "first keyframe after 0": 0, "rescans": 0, "deduplicated": 0, "differs": 0}
    for shot in range(SHOTS):
        emb, usable, bank = random_shot(g)
        record = select_with_record(emb, usable, bank, release)
        assert record.indices == release_oracle(emb, usable, bank), f"shot {shot}"
        seen["no usable frame"] += not usable.any()
        seen["first keyframe after 0"] += bool(record.candidates) and record.candidates[0] > 0
        seen["rescans"] += record.rescans > 0
        seen["deduplicated"] += bool(record.duplicates)
        seen["differs"] += select_with_record(emb, usable, bank, default).indices != record.indices
    # Every path of the extraction was taken many times, and the oracle tells the modes apart.
    assert all(count >= 20 for count in seen.values()), seen
