"""Memory bank: roles, eviction, persistence, atomic save, rollback."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from storymem_cli.config import MemoryConfig
from storymem_cli.errors import InvalidInputError, StorymemError
from storymem_cli.memory.bank import FORMAT_VERSION, MemoryBank
from storymem_cli.memory.embed import load_embedder


def shot_data(shot: int, n: int = 6, dim: int = 8):
    g = np.random.default_rng(100 + shot)
    frames = g.integers(0, 256, size=(n, 16, 24, 3), dtype=np.uint8)
    emb = g.normal(size=(n, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    scores = g.uniform(0, 10, size=n).astype(np.float32)
    novelty = g.uniform(0, 1, size=n).astype(np.float32)
    novelty[0] = np.nan
    return frames, emb, scores, novelty


def render_shots(bank: MemoryBank, shots: range, per_shot: int = 2, snapshots: dict | None = None) -> None:
    """What the renderer does per shot: record conditioning, then add the shot's keyframes."""
    for shot in shots:
        if snapshots is not None:
            snapshots[shot] = bank.to_json()
        bank.record_conditioning(shot, [e.id for e in bank.conditioning_entries()])
        frames, emb, scores, novelty = shot_data(shot)
        bank.add_shot_keyframes(shot, frames, list(range(per_shot)), emb, scores, novelty)
        bank.save()


def ref_image(seed: int, size: int = 20) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(size, size + 4, 3), dtype=np.uint8)


def test_open_creates_memory_folder_and_json(tmp_path):
    bank = MemoryBank.open(tmp_path / "run")
    assert (tmp_path / "run" / "memory").is_dir()
    data = json.loads((tmp_path / "run" / "memory.json").read_text())
    assert data["format_version"] == FORMAT_VERSION and data["entries"] == [] and bank.entries == []


def test_sink_is_kept_and_the_oldest_window_entry_is_evicted(tmp_path):
    cfg = MemoryConfig(capacity=5, sink_size=2)
    bank = MemoryBank.open(tmp_path, cfg)
    render_shots(bank, range(5))  # 10 keyframes, 2 per shot
    roles = [(e.source.shot, e.source.frame, e.role, e.evicted_by_shot) for e in bank.entries]
    assert roles[:2] == [(0, 0, "sink", None), (0, 1, "sink", None)]
    active = bank.conditioning_entries()
    assert [(e.source.shot, e.source.frame) for e in active] == [(0, 0), (0, 1), (3, 1), (4, 0), (4, 1)]
    assert [e.evicted_by_shot for e in bank.entries[2:7]] == [2, 3, 3, 4, 4]  # capacity 5 = 2 sink + 3 window


def test_paper_defaults_capacity_ten_sink_three(tmp_path):
    bank = MemoryBank.open(tmp_path)
    render_shots(bank, range(6), per_shot=3)
    active = bank.conditioning_entries()
    assert len(active) == 10
    assert [e.role for e in active[:3]] == ["sink"] * 3 and all(e.source.shot == 0 for e in active[:3])
    assert [(e.source.shot, e.source.frame) for e in active[3:]] == [(3, 2)] + [(s, f) for s in (4, 5) for f in range(3)]


def test_references_are_pinned_take_sink_slots_and_come_first(tmp_path):
    cfg = MemoryConfig(capacity=5, sink_size=3)
    bank = MemoryBank.open(tmp_path, cfg)
    r1 = bank.add_reference(ref_image(1), "Alice")
    r2 = bank.add_reference(ref_image(2), "the old lighthouse")
    render_shots(bank, range(6))
    active = bank.conditioning_entries()
    assert [e.id for e in active[:2]] == [r1, r2]
    assert r2.startswith("ref-the-old-lighthouse-")
    assert active[2].role == "sink" and (active[2].source.shot, active[2].source.frame) == (0, 0)
    assert [e.role for e in active[3:]] == ["window", "window"]
    assert [(e.source.shot, e.source.frame) for e in active[3:]] == [(5, 0), (5, 1)]
    assert all(e.active for e in bank.entries if e.role in ("reference", "sink"))


def test_pinned_entries_filling_the_capacity_are_never_evicted(tmp_path):
    bank = MemoryBank.open(tmp_path, MemoryConfig(capacity=2, sink_size=0))
    refs = [bank.add_reference(ref_image(i), f"r{i}") for i in range(2)]
    render_shots(bank, range(2))
    assert [e.id for e in bank.conditioning_entries()] == refs
    assert all(e.evicted_by_shot == e.added_by_shot for e in bank.entries if e.role == "window")


def test_memory_json_round_trip_is_identical_and_lossless(tmp_path):
    bank = MemoryBank.open(tmp_path)
    bank.add_reference(ref_image(3), "Bob")
    render_shots(bank, range(7), per_shot=3)
    text = (tmp_path / "memory.json").read_text()
    again = MemoryBank.open(tmp_path)
    assert again.to_json() == text
    again.save()
    assert (tmp_path / "memory.json").read_text() == text
    assert [e.model_dump() for e in again.entries] == [e.model_dump() for e in bank.entries]
    frames, emb, scores, novelty = shot_data(6)
    e = next(e for e in again.entries if e.source.kind == "shot" and e.source.shot == 6 and e.source.frame == 1)
    np.testing.assert_array_equal(again.load_image(e), frames[1])
    np.testing.assert_array_equal(e.embedding_array(), emb[1])
    assert e.score == float(scores[1]) and e.novelty == float(novelty[1])
    first = next(e for e in again.entries if e.source.kind == "shot" and e.source.frame == 0)
    assert first.novelty is None  # NaN (no previous keyframe) is stored as null


def test_crash_between_png_and_json_leaves_the_previous_bank(tmp_path, monkeypatch):
    bank = MemoryBank.open(tmp_path)
    render_shots(bank, range(2))
    before = (tmp_path / "memory.json").read_text()
    frames, emb, scores, _ = shot_data(2)
    bank.add_shot_keyframes(2, frames, [0, 3], emb, scores)
    real_replace = os.replace

    def crash_on_json(src, dst):
        if str(dst).endswith("memory.json"):
            raise KeyboardInterrupt("killed")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_json)
    with pytest.raises(KeyboardInterrupt):
        bank.save()
    monkeypatch.setattr(os, "replace", real_replace)
    assert len(list((tmp_path / "memory").glob("s003-*.png"))) == 2  # the PNGs were written first
    assert (tmp_path / "memory.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    reopened = MemoryBank.open(tmp_path)
    assert all(e.added_by_shot < 2 for e in reopened.entries)
    for e in reopened.active_entries():
        reopened.load_image(e)


def test_rollback_restores_the_exact_state_before_each_shot(tmp_path):
    cfg = MemoryConfig(capacity=4, sink_size=1)
    bank = MemoryBank.open(tmp_path, cfg)
    bank.add_reference(ref_image(9), "hero")
    snapshots: dict[int, str] = {}
    render_shots(bank, range(6), snapshots=snapshots)
    final = (tmp_path / "memory.json").read_text()
    for k in range(6):
        b = MemoryBank.open(tmp_path, cfg)
        assert b.to_json() == final
        b.rollback(before_shot=k)
        assert b.to_json() == snapshots[k], f"rollback to before shot {k}"
        for e in b.active_entries():  # evicted entries come back with their PNGs
            assert b.load_image(e).shape == (e.height, e.width, 3)
    # Re-rendering from shot 3 after a rollback reproduces the same log.
    b = MemoryBank.open(tmp_path, cfg)
    b.rollback(before_shot=3)
    render_shots(b, range(3, 6))
    assert (tmp_path / "memory.json").read_text() == final


def test_no_keyframes_leaves_the_bank_unchanged(tmp_path):
    bank = MemoryBank.open(tmp_path)
    render_shots(bank, range(2))
    before = bank.to_json()
    frames, emb, scores, _ = shot_data(2)
    assert bank.add_shot_keyframes(2, frames, [], emb, scores) == []
    assert bank.to_json() == before


def test_adding_a_shot_twice_needs_a_rollback(tmp_path):
    bank = MemoryBank.open(tmp_path)
    render_shots(bank, range(2))
    frames, emb, scores, _ = shot_data(1)
    with pytest.raises(StorymemError, match="rollback"):
        bank.add_shot_keyframes(1, frames, [0], emb, scores)


def test_loading_never_globs_the_memory_folder(tmp_path):
    bank = MemoryBank.open(tmp_path)
    render_shots(bank, range(1))
    from PIL import Image

    Image.fromarray(ref_image(5)).save(tmp_path / "memory" / "stale_keyframe.png")
    assert [e.id for e in MemoryBank.open(tmp_path).entries] == [e.id for e in bank.entries]


def test_references_get_embedded_when_the_renderer_asks(tmp_path):
    bank = MemoryBank.open(tmp_path)
    rid = bank.add_reference(ref_image(4, size=70), "Alice")
    with pytest.raises(StorymemError, match="no embedding"):
        bank.active_embeddings()
    emb = load_embedder("tiny")
    vecs = bank.active_embeddings(emb)
    assert vecs.shape == (1, emb.dim)
    np.testing.assert_allclose(vecs[0], emb.embed(ref_image(4, size=70)[None])[0], atol=1e-6)
    bank.save()
    assert MemoryBank.open(tmp_path).get(rid).embedder == emb.name


def test_remove_and_unknown_ids(tmp_path):
    bank = MemoryBank.open(tmp_path)
    rid = bank.add_reference(ref_image(6), "x")
    with pytest.raises(InvalidInputError, match="already in memory"):
        bank.add_reference(ref_image(6), "x")
    bank.remove(rid)
    assert bank.entries == []
    with pytest.raises(InvalidInputError, match="no memory entry"):
        bank.remove(rid)


@pytest.mark.parametrize(
    ("text", "match"),
    [("{not json", "not valid JSON"), ('{"format_version": 99, "entries": []}', "format_version 99"),
     ('{"format_version": 1, "entries": [{"id": 3}]}', "entries\\[0\\]"),
     ('{"format_version": 1, "entries": [{"id": "x", "file": "../../etc/passwd", "role": "window", "width": 1, '
      '"height": 1, "sha256": "", "source": {"kind": "reference", "name": "x"}}]}', "memory/<id>.png")],
)
def test_a_damaged_memory_json_is_invalid_input(tmp_path, text, match):
    (tmp_path / "memory.json").write_text(text)
    with pytest.raises(InvalidInputError, match=match):
        MemoryBank.open(tmp_path)


def test_embeddings_of_the_same_embedder_are_reused_and_others_recomputed(tmp_path):
    emb = load_embedder("tiny")
    bank = MemoryBank.open(tmp_path)
    frames, _, scores, _ = shot_data(0)
    own = emb.embed(frames)
    bank.add_shot_keyframes(0, frames, [0, 1], own, scores)  # no embedder name given
    np.testing.assert_array_equal(bank.active_embeddings(emb), own[:2])  # trusted: right size

    class Other:
        name, dim = "other", emb.dim

        @staticmethod
        def embed(images):
            return np.ones((len(images), emb.dim), np.float32)

    bank2 = MemoryBank.open(tmp_path / "b")
    bank2.add_shot_keyframes(0, frames, [0], own, scores, embedder="tiny")
    np.testing.assert_array_equal(bank2.active_embeddings(Other()), np.ones((1, emb.dim)))
    assert bank2.entries[0].embedder == "other"
