"""Keyframe selection on synthetic embeddings (SPEC 7)."""

from __future__ import annotations

import numpy as np
import pytest

from storymem_cli.config import MemoryConfig
from storymem_cli.memory.select import select_keyframes, select_with_record


def test_three_plateaus_give_three_keyframes(cfg, synth):
    plateaus = synth.plateaus
    emb = plateaus(3, 27)
    usable = np.ones(len(emb), dtype=bool)
    rec = select_with_record(emb, usable, None, cfg)
    assert rec.indices == [0, 27, 54]
    assert rec.threshold == pytest.approx(0.9) and rec.rescans == 0


def test_ten_plateaus_lower_the_threshold_until_at_most_three(synth):
    unit = synth.unit
    # Plateau centres drift slowly: consecutive plateaus at cosine ~0.85, so at 0.9 every
    # plateau is new (10 keyframes) and the threshold must fall below the 0.85 step.
    g = np.random.default_rng(1)
    dim = 64
    centres = [unit(g.normal(size=dim))]
    for _ in range(9):
        step = unit(g.normal(size=dim))
        step = unit(step - (step @ centres[-1]) * centres[-1])
        centres.append(unit(0.85 * centres[-1] + np.sqrt(1 - 0.85**2) * step))
    emb = np.concatenate([np.repeat(c[None], 8, axis=0) for c in centres]).astype(np.float32)
    cfg = MemoryConfig()
    usable = np.ones(len(emb), dtype=bool)
    first_pass = select_with_record(emb, usable, None, cfg.model_copy(update={"max_keyframes_per_shot": 100}))
    assert len(first_pass.indices) == 10
    rec = select_with_record(emb, usable, None, cfg)
    assert 1 <= len(rec.indices) <= 3
    assert rec.threshold < 0.85 and rec.rescans > 0
    assert rec.threshold == pytest.approx(0.9 - rec.rescans * 0.01, abs=1e-6)
    # One step less would have chosen more than three: the threshold fell only as far as needed.
    looser = cfg.model_copy(update={"novelty_threshold": rec.threshold + 0.01, "max_keyframes_per_shot": 100})
    assert len(select_keyframes(emb, usable, None, looser)) > 3


def test_unusable_leading_frames_are_skipped(cfg, synth):
    plateaus = synth.plateaus
    emb = plateaus(3, 10)
    usable = np.ones(len(emb), dtype=bool)
    usable[:4] = False
    assert select_keyframes(emb, usable, None, cfg) == [4, 10, 20]


def test_unusable_frames_are_never_keyframes_nor_the_reference(cfg, synth):
    plateaus = synth.plateaus
    emb = plateaus(3, 10)
    usable = np.ones(len(emb), dtype=bool)
    usable[10:13] = False  # the start of plateau 2: its first usable frame is 13
    assert select_keyframes(emb, usable, None, cfg) == [0, 13, 20]


def test_all_unusable_gives_no_keyframes(cfg, synth):
    plateaus = synth.plateaus
    emb = plateaus(3, 10)
    rec = select_with_record(emb, np.zeros(len(emb), dtype=bool), None, cfg)
    assert rec.indices == [] and rec.threshold is None and np.isnan(rec.novelty).all()


def test_dedupe_drops_a_frame_already_in_memory(cfg, synth):
    plateaus, unit = synth.plateaus, synth.unit
    emb = plateaus(3, 10, seed=4)
    usable = np.ones(len(emb), dtype=bool)
    bank = unit(emb[12] + 0.001)[None]  # plateau 2 is already remembered
    rec = select_with_record(emb, usable, bank, cfg)
    assert rec.candidates == [0, 10, 20]
    assert rec.indices == [0, 20] and rec.duplicates == [10]


def test_dedupe_keeps_a_frame_at_exactly_the_threshold_distance(cfg, synth):
    plateaus, unit = synth.plateaus, synth.unit
    emb = plateaus(1, 3, seed=5, noise=0.0)
    other = unit(np.random.default_rng(2).normal(size=emb.shape[1]))
    other = unit(other - (other @ emb[0]) * emb[0])
    bank = unit(0.9 * emb[0] + np.sqrt(1 - 0.81) * other)[None]  # cosine 0.9: not "above 0.9"
    assert abs(float(bank[0] @ emb[0]) - 0.9) < 1e-5
    tight = cfg.model_copy(update={"dedupe_threshold": float(bank[0] @ emb[0])})
    assert select_keyframes(emb, np.ones(3, bool), bank, tight) == [0]


def test_novelty_is_one_minus_cosine_to_the_latest_keyframe(cfg, synth):
    plateaus = synth.plateaus
    emb = plateaus(2, 5)
    rec = select_with_record(emb, np.ones(10, bool), None, cfg)
    assert np.isnan(rec.novelty[0])
    assert rec.novelty[3] == pytest.approx(1 - emb[0] @ emb[3], abs=1e-6)
    assert rec.novelty[7] == pytest.approx(1 - emb[5] @ emb[7], abs=1e-6)


def test_release_mode_takes_frame_0_then_scans_from_frame_2(synth):
    # Frame 0 differs from the rest (a cut after it): the default takes frame 1 as the new
    # content's keyframe, the release never looks at frame 1 and takes frame 2 instead.
    emb = np.concatenate([synth.plateaus(1, 1, seed=1), synth.plateaus(3, 10, seed=2)[1:]])
    usable = np.ones(len(emb), bool)
    no_cap = {"max_keyframes_per_shot": 100}  # no rescans: the scans themselves are compared
    assert select_keyframes(emb, usable, None, MemoryConfig(**no_cap)) == [0, 1, 10, 20]
    release = MemoryConfig(selection="release", **no_cap)
    assert select_keyframes(emb, usable, None, release) == [0, 2, 10, 20]
    usable[0] = False  # frame 1 is the first usable frame: the first keyframe, then the scan from 2
    assert select_keyframes(emb, usable, None, release) == [1, 10, 20]


def test_mismatched_shapes_are_refused(cfg, synth):
    plateaus = synth.plateaus
    with pytest.raises(ValueError, match="must agree"):
        select_keyframes(plateaus(1, 4), np.ones(3, bool), None, cfg)


def test_first_frame_selection_takes_only_the_first_usable_frame(synth):
    emb = synth.plateaus(3, 10)  # semantic selection would take 0, 10, 20
    cfg = MemoryConfig(selection="first-frame")
    usable = np.ones(len(emb), dtype=bool)
    rec = select_with_record(emb, usable, None, cfg)
    assert rec.indices == [0] and rec.candidates == [0] and rec.duplicates == []
    assert rec.threshold is None and rec.rescans == 0 and np.isnan(rec.novelty).all()
    usable[:3] = False
    assert select_keyframes(emb, usable, None, cfg) == [3]  # the aesthetic filter still applies
    assert select_keyframes(emb, np.zeros(len(emb), bool), None, cfg) == []


def test_first_frame_selection_is_never_deduplicated_against_the_bank(synth):
    emb = synth.plateaus(2, 5)
    bank = emb[[0, 5]]  # the bank already holds this very frame
    semantic = select_with_record(emb, np.ones(10, bool), bank, MemoryConfig())
    assert semantic.indices == [] and semantic.duplicates == [0, 5]
    ablation = select_keyframes(emb, np.ones(10, bool), bank, MemoryConfig(selection="first-frame"))
    assert ablation == [0]


def test_selection_mode_is_validated():
    with pytest.raises(ValueError, match="selection"):
        MemoryConfig(selection="random")
