"""Sample construction (paper 3.3): memory counts, no-memory share, MI2V odds, where memory comes from."""

from __future__ import annotations

import numpy as np
import pytest

from storymem_cli.config import WAN_DEFAULT_NEGATIVE_PROMPT
from storymem_cli.toy.dataset import ClipEntry, ClipGroup, DatasetIndex
from storymem_cli.train.config import TrainConfig
from storymem_cli.train.data import ClipStore, draw_batch, draw_layout, draw_sample

FRAMES = 9


def index_of(sizes: list[int]) -> DatasetIndex:
    def clip(g: int, c: int) -> ClipEntry:
        return ClipEntry(path=f"g{g}_{c}.npz", caption=f"full {g} {c}", memory_caption=f"role {g} {c}")

    groups = [ClipGroup(id=f"g{g}", clips=[clip(g, c) for c in range(n)]) for g, n in enumerate(sizes)]
    return DatasetIndex(groups=groups)


def lengths(index: DatasetIndex, frames: int = 17):
    return lambda g, c: frames


def cfg(tmp_path, **kw) -> TrainConfig:
    return TrainConfig(dataset=tmp_path, output=tmp_path / "out", **kw)


def test_memory_count_bounds_and_source(tmp_path):
    config = cfg(tmp_path, caption_dropout=0.0)
    index = index_of([1, 2, 4, 3])
    rng = np.random.default_rng(0)
    counts = []
    for _ in range(3000):
        layout = draw_layout(rng, config)
        spec = draw_sample(rng, index, layout, config, FRAMES, lengths(index))
        group = index.groups[spec.group]
        available = (len(group.clips) - 1) * 17
        assert len(spec.memory) == min(layout.memory, available)
        assert all(c != spec.target for c, _ in spec.memory)  # never from the target clip
        assert all(0 <= f < 17 for _, f in spec.memory)
        assert len(set(spec.memory)) == len(spec.memory)  # no frame twice
        assert list(spec.memory) == sorted(spec.memory)  # story order
        assert 0 <= spec.start <= 17 - FRAMES
        if layout.memory:
            assert config.memory_min <= layout.memory <= config.memory_max
        counts.append(len(spec.memory))
        if len(group.clips) == 1:
            assert spec.memory == ()  # nothing else in the group
        assert spec.caption == (group.clips[spec.target].memory_caption if spec.memory else group.clips[spec.target].caption)
    assert max(counts) == 10 and min(c for c in counts if c) == 1


def test_memory_capped_by_what_the_group_has(tmp_path):
    config = cfg(tmp_path, memory_min=10, memory_max=10, no_memory_share=0.0)
    index = index_of([2])
    rng = np.random.default_rng(1)
    for _ in range(50):
        spec = draw_sample(rng, index, draw_layout(rng, config), config, 3, lambda g, c: 3)
        assert len(spec.memory) == 3  # the other clip has 3 frames


def test_memory_frame_stride_draws_only_every_kth_frame(tmp_path):
    config = cfg(tmp_path, memory_min=10, memory_max=10, no_memory_share=0.0, memory_frame_stride=4)
    index = index_of([3])
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(200):
        spec = draw_sample(rng, index, draw_layout(rng, config), config, FRAMES, lengths(index))
        assert len(spec.memory) == 10  # 2 other clips x frames 0, 4, 8, 12, 16
        seen.update(f for _, f in spec.memory)
    assert seen == {0, 4, 8, 12, 16}


def test_shares_over_many_draws(tmp_path):
    config = cfg(tmp_path, no_memory_share=0.2)
    rng = np.random.default_rng(2)
    layouts = [draw_layout(rng, config) for _ in range(4000)]
    no_memory = np.mean([lay.memory == 0 for lay in layouts])
    mi2v = np.mean([lay.known_frames == 1 for lay in layouts])
    assert abs(no_memory - 0.2) < 0.03
    assert abs(mi2v - 0.5) < 0.03  # paper: first-frame conditioning with probability 0.5
    assert {lay.known_frames for lay in layouts} == {0, 1}
    mm2v = [draw_layout(rng, cfg(tmp_path, continuation="mm2v")).known_frames for _ in range(200)]
    assert set(mm2v) == {0, 5}
    counts = np.bincount([lay.memory for lay in layouts if lay.memory], minlength=11)[1:]
    assert counts.min() > 0.6 * counts.mean()  # uniform over 1..10


def test_t2v_batches_only_when_asked(tmp_path):
    config = cfg(tmp_path, t2v_share=0.3)
    rng = np.random.default_rng(3)
    assert all(draw_layout(rng, config).kind == "m2v" for _ in range(300))
    kinds = [draw_layout(rng, config, t2v=True) for _ in range(2000)]
    t2v = [k for k in kinds if k.kind == "t2v"]
    assert abs(len(t2v) / 2000 - 0.3) < 0.04
    assert all(k.memory == 0 and k.known_frames == 0 for k in t2v)


def test_caption_dropout_uses_the_negative_prompt(tmp_path):
    config = cfg(tmp_path, caption_dropout=0.5)
    index = index_of([3])
    rng = np.random.default_rng(4)
    captions = [draw_sample(rng, index, draw_layout(rng, config), config, FRAMES, lengths(index)).caption for _ in range(400)]
    share = np.mean([c == WAN_DEFAULT_NEGATIVE_PROMPT for c in captions])
    assert abs(share - 0.5) < 0.08


def test_batch_shares_its_layout(tmp_path):
    config = cfg(tmp_path, batch_size=4)
    index = index_of([1, 3, 3])
    for seed in range(40):
        rng = np.random.default_rng(seed)
        layout, specs = draw_batch(rng, index, config, FRAMES, lengths(index))
        assert len(specs) == 4
        assert len({len(s.memory) for s in specs}) == 1
        assert {s.known_frames for s in specs} == {layout.known_frames}
        assert all(c != s.target for s in specs for c, _ in s.memory)


def test_draws_are_a_function_of_the_seed(tmp_path):
    config = cfg(tmp_path)
    index = index_of([3, 3])
    a = draw_batch(np.random.default_rng([0, 5]), index, config, FRAMES, lengths(index))
    b = draw_batch(np.random.default_rng([0, 5]), index, config, FRAMES, lengths(index))
    assert a == b


def test_materialise_reads_the_right_pixels(toy_dataset, tmp_path):
    from storymem_cli.toy.dataset import load_clip, load_index

    index, root = load_index(toy_dataset)
    store = ClipStore(index, root)
    config = cfg(tmp_path, no_memory_share=0.0, first_frame_prob=1.0)
    rng = np.random.default_rng(5)
    spec = draw_sample(rng, index, draw_layout(rng, config), config, FRAMES, store.frame_count)
    sample = store.materialise(spec, FRAMES)
    target = load_clip(root / index.groups[spec.group].clips[spec.target].path)
    assert np.array_equal(sample.video, target[spec.start : spec.start + FRAMES])
    assert np.array_equal(sample.first_frames[0], target[spec.start])
    for image, (c, f) in zip(sample.memory, spec.memory):
        assert np.array_equal(image, load_clip(root / index.groups[spec.group].clips[c].path)[f])


def test_short_clip_is_named(tmp_path):
    from storymem_cli.errors import InvalidInputError

    config = cfg(tmp_path)
    index = index_of([2])
    with pytest.raises(InvalidInputError, match="g0_.*has 5 frames; training needs 9"):
        draw_sample(np.random.default_rng(0), index, draw_layout(np.random.default_rng(0), config), config, 9, lambda g, c: 5)
