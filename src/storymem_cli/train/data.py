"""Training samples from a dataset index (paper 3.3, format in toy/dataset.py).

A sample is one *target* clip of a group and 0-10 *memory* frames drawn from the group's other
clips; half the samples also know the target's first frame (MI2V) or first 5 frames (MM2V). What a
sample is made of is decided by pure functions of a ``numpy.random.Generator`` (``draw_*``), so the
data order of a run is a function of its seed and step; ``ClipStore.materialise`` then reads pixels.

A batch shares its layout (how many memory frames, how many known frames, M2V or T2V) so its tensors
stack; the marginal distribution of each sample is the same as drawing them one by one.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from storymem_cli.config import MOTION_FRAMES_MM2V, WAN_DEFAULT_NEGATIVE_PROMPT
from storymem_cli.errors import InvalidInputError
from storymem_cli.toy.dataset import DatasetIndex, load_clip
from storymem_cli.train.config import TrainConfig

SampleKind = Literal["m2v", "t2v"]
KNOWN_FRAMES = {"mi2v": 1, "mm2v": MOTION_FRAMES_MM2V}
CLIP_CACHE_SIZE = 512  # decoded clips kept in memory (~200 KB each at 64x64x17)


@dataclass(frozen=True)
class BatchLayout:
    """What every sample of one batch shares."""

    kind: SampleKind  # m2v: the memory model; t2v: the first-shot model (from scratch only)
    memory: int  # memory frames wanted (samples cap it by what their group has)
    known_frames: int  # 0 (M2V), 1 (MI2V) or 5 (MM2V) known first frames of the target


@dataclass(frozen=True)
class SampleSpec:
    """One sample, decided but not read: clip indices are positions in the group's ``clips``."""

    group: int
    target: int
    start: int  # first frame of the target window
    memory: tuple[tuple[int, int], ...]  # (clip, frame) pairs, never from the target clip, in story order
    known_frames: int
    caption: str
    kind: SampleKind


@dataclass
class Sample:
    """One sample's pixels: uint8 frames as every module boundary passes them."""

    video: np.ndarray  # (F, H, W, 3), the target window
    memory: list[np.ndarray]  # (H, W, 3) images
    first_frames: list[np.ndarray]  # the target's own known first frames
    caption: str
    kind: SampleKind


def draw_layout(rng: np.random.Generator, cfg: TrainConfig, t2v: bool = False) -> BatchLayout:
    """Memory count uniform in [memory_min, memory_max] (0 with ``no_memory_share``), known frames with
    ``first_frame_prob``; with ``t2v`` a ``t2v_share`` of batches are first-shot (T2V) batches."""
    if t2v and rng.random() < cfg.t2v_share:
        return BatchLayout("t2v", 0, 0)
    memory = 0 if rng.random() < cfg.no_memory_share else int(rng.integers(cfg.memory_min, cfg.memory_max + 1))
    known = KNOWN_FRAMES[cfg.continuation] if rng.random() < cfg.first_frame_prob else 0
    return BatchLayout("m2v", memory, known)


def draw_window(rng: np.random.Generator, index: DatasetIndex, frames: int, frame_count) -> tuple[int, int, int]:
    """(group, clip, start): a clip (every clip of the dataset equally likely) and a window of ``frames``.

    ``frame_count(group, clip) -> int`` says how long a clip is.
    """
    sizes = np.array([len(g.clips) for g in index.groups])
    flat = int(rng.integers(0, int(sizes.sum())))
    group = int(np.searchsorted(np.cumsum(sizes), flat, side="right"))
    target = flat - int(sizes[:group].sum())
    length = frame_count(group, target)
    if length < frames:
        clip = index.groups[group].clips[target].path
        raise InvalidInputError(
            f"clip {clip!r} (groups[{group}].clips[{target}]) has {length} frames; training needs {frames}",
            hint="train with fewer --frames or leave shorter clips out of the index",
        )
    return group, target, int(rng.integers(0, length - frames + 1))


def draw_sample(
    rng: np.random.Generator,
    index: DatasetIndex,
    layout: BatchLayout,
    cfg: TrainConfig,
    frames: int,
    frame_count,
) -> SampleSpec:
    """A target window (:func:`draw_window`) and its memory frames, drawn without replacement from all
    frames of the group's other clips, so there are never more than exist."""
    group, target, start = draw_window(rng, index, frames, frame_count)
    memory: tuple[tuple[int, int], ...] = ()
    if layout.memory:
        stride = cfg.memory_frame_stride
        pool = [(c, f) for c in range(len(index.groups[group].clips)) if c != target
                for f in range(0, frame_count(group, c), stride)]  # fmt: skip
        count = min(layout.memory, len(pool))
        picked = rng.choice(len(pool), size=count, replace=False) if count else []
        memory = tuple(sorted(pool[i] for i in picked))
    entry = index.groups[group].clips[target]
    if rng.random() < cfg.caption_dropout:
        caption = WAN_DEFAULT_NEGATIVE_PROMPT  # what CFG's unconditional branch sees at inference
    elif memory and entry.memory_caption:
        caption = entry.memory_caption
    else:
        caption = entry.caption
    return SampleSpec(group, target, start, memory, layout.known_frames, caption, layout.kind)


def draw_batch(
    rng: np.random.Generator,
    index: DatasetIndex,
    cfg: TrainConfig,
    frames: int,
    frame_count,
    t2v: bool = False,
) -> tuple[BatchLayout, list[SampleSpec]]:
    """A layout and ``batch_size`` samples; memory is trimmed to the smallest any sample could get."""
    layout = draw_layout(rng, cfg, t2v)
    specs = [draw_sample(rng, index, layout, cfg, frames, frame_count) for _ in range(cfg.batch_size)]
    shared = min(len(s.memory) for s in specs)
    trimmed = []
    for s in specs:
        keep = sorted(rng.choice(len(s.memory), size=shared, replace=False)) if len(s.memory) > shared else range(shared)
        trimmed.append(SampleSpec(s.group, s.target, s.start, tuple(s.memory[i] for i in keep), s.known_frames,
                                  s.caption, s.kind))  # fmt: skip
    return layout, trimmed


class ClipStore:
    """Reads the clips of a dataset index, keeping the most recently used ones decoded."""

    def __init__(self, index: DatasetIndex, root: Path, cache_size: int = CLIP_CACHE_SIZE):
        self.index, self.root, self.cache_size = index, root, cache_size
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    def clip(self, group: int, clip: int) -> np.ndarray:
        key = (group, clip)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        frames = load_clip(self.root / self.index.groups[group].clips[clip].path)
        self._cache[key] = frames
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return frames

    def frame_count(self, group: int, clip: int) -> int:
        return int(self.clip(group, clip).shape[0])

    def materialise(self, spec: SampleSpec, frames: int) -> Sample:
        video = self.clip(spec.group, spec.target)[spec.start : spec.start + frames]
        memory = [self.clip(spec.group, c)[f] for c, f in spec.memory]
        return Sample(video, memory, list(video[: spec.known_frames]), spec.caption, spec.kind)
