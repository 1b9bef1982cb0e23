"""The renderer's per-shot memory flow end to end with the tiny models."""

from __future__ import annotations

import numpy as np

from storymem_cli.memory.bank import MemoryBank
from storymem_cli.memory.embed import load_embedder
from storymem_cli.memory.quality import load_scorer
from storymem_cli.memory.select import select_with_record


def shot_frames(seed: int) -> np.ndarray:
    """Two still scenes of 6 frames each: flat colour fields, different per scene."""
    g = np.random.default_rng(seed)
    scenes = g.integers(0, 256, size=(2, 1, 1, 3))
    base = np.repeat(np.repeat(scenes, 36, axis=1), 48, axis=2).astype(np.int16)
    frames = np.repeat(base, 6, axis=0) + g.integers(-2, 3, size=(12, 36, 48, 3))
    return np.clip(frames, 0, 255).astype(np.uint8)


def remember(bank, embedder, scorer, shot, frames):
    bank.record_conditioning(shot, [e.id for e in bank.conditioning_entries()])
    emb = embedder.embed(frames)
    scores = scorer.score(frames)
    rec = select_with_record(emb, scorer.usable(scores), bank.active_embeddings(embedder), bank.cfg)
    ids = bank.add_shot_keyframes(shot, frames, rec.indices, emb, scores, rec.novelty, embedder=embedder.name)
    bank.save()
    return rec, ids


def test_flow_adds_keyframes_and_dedupes_a_repeated_shot(tmp_path):
    embedder, scorer = load_embedder("tiny"), load_scorer("none")
    bank = MemoryBank.open(tmp_path)
    rec0, ids0 = remember(bank, embedder, scorer, 0, shot_frames(0))
    assert ids0 and len(ids0) <= 3 and rec0.indices[0] == 0
    # The same footage again: every keyframe is already in memory.
    rec1, ids1 = remember(bank, embedder, scorer, 1, shot_frames(0))
    assert ids1 == [] and rec1.duplicates == rec1.candidates
    assert MemoryBank.open(tmp_path).conditioning[1] == ids0


def test_flow_with_no_usable_frame_leaves_the_bank_unchanged(tmp_path):
    embedder = load_embedder("tiny")
    bank = MemoryBank.open(tmp_path)
    remember(bank, embedder, load_scorer("none"), 0, shot_frames(0))
    before = [e.model_dump() for e in bank.entries]
    rec, ids = remember(bank, embedder, load_scorer("tiny", threshold=1e9), 1, shot_frames(1))
    assert rec.indices == [] and ids == []
    assert [e.model_dump() for e in MemoryBank.open(tmp_path).entries] == before
