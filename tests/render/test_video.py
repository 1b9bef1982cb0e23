"""Clip writing and joining with imageio-ffmpeg; tail frames stay lossless."""

from __future__ import annotations

import numpy as np
import pytest

from storymem_cli.render.runfolder import RunFolder
from storymem_cli.render.video import MAX_SIDE, join_clips, read_frames, read_frames_at, upscale_nearest, write_clip


def test_join_is_a_stream_copy_of_the_clips(tmp_path):
    rng = np.random.default_rng(0)
    clips, decoded = [], []
    for i, n in enumerate([9, 8, 4]):
        path = tmp_path / f"shot_{i}.mp4"
        write_clip(rng.integers(0, 256, (n, 32, 48, 3), dtype=np.uint8), path, fps=16)
        clips.append(path)
        decoded.append(read_frames(path))
    join_clips(clips, tmp_path / "story.mp4")
    story = read_frames(tmp_path / "story.mp4")
    assert story.shape == (21, 32, 48, 3)
    assert np.array_equal(story, np.concatenate(decoded))  # joining never re-encodes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shot_0.mp4", "shot_1.mp4", "shot_2.mp4", "story.mp4"]


def test_frames_read_by_index_equal_the_full_decode_across_joined_clips(tmp_path):
    """preview.png reads each shot's middle frame from story.mp4 in one pass (render/preview.py)."""
    rng = np.random.default_rng(3)
    clips = []
    for i, n in enumerate([9, 8, 4]):
        clips.append(tmp_path / f"shot_{i}.mp4")
        write_clip(rng.integers(0, 256, (n, 32, 48, 3), dtype=np.uint8), clips[-1], fps=16)
    join_clips(clips, tmp_path / "story.mp4")
    story = read_frames(tmp_path / "story.mp4")
    picked = [0, 4, 9, 13, 17, 20]  # both sides of each seam, the first and the last frame
    assert np.array_equal(read_frames_at(tmp_path / "story.mp4", picked), story[picked])
    with pytest.raises(OSError, match="gave 1 of the frames"):
        read_frames_at(tmp_path / "story.mp4", [20, 21])
    with pytest.raises(ValueError, match="ascending"):
        read_frames_at(tmp_path / "story.mp4", [4, 0])


def test_encoding_is_deterministic(tmp_path):
    frames = np.random.default_rng(1).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    write_clip(frames, tmp_path / "a.mp4", fps=16)
    write_clip(frames, tmp_path / "b.mp4", fps=16)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_tail_frames_round_trip_exactly(tmp_path):
    folder = RunFolder(tmp_path)
    folder.prepare()
    tail = np.random.default_rng(2).integers(0, 256, (5, 16, 24, 3), dtype=np.uint8)
    folder.save_tail(0, tail)
    assert folder.tail(0).name == "shot_001.tail.npz"
    restored = folder.load_tail(0)
    assert restored.dtype == np.uint8 and np.array_equal(restored, tail)


def test_upscale_nearest_repeats_each_pixel_as_a_block():
    frames = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    big = upscale_nearest(frames, 3)
    assert big.shape == (2, 9, 12, 3) and big.dtype == np.uint8
    for dy in range(3):
        for dx in range(3):
            assert np.array_equal(big[:, dy::3, dx::3], frames)
    assert upscale_nearest(frames, 1) is frames
    assert upscale_nearest(frames[0], 2).shape == (6, 8, 3)  # a single image works too
    with pytest.raises(ValueError, match="at least 1"):
        upscale_nearest(frames, 0)


def test_a_clip_ffmpeg_refuses_is_an_error_not_an_empty_file(tmp_path):
    too_wide = np.zeros((1, 16, MAX_SIDE + 16, 3), dtype=np.uint8)
    with pytest.raises(OSError, match="ffmpeg wrote nothing"):
        write_clip(too_wide, tmp_path / "clip.mp4", fps=16)
    assert list(tmp_path.iterdir()) == []


def test_ffmpeg_is_started_without_forking_the_whole_process(tmp_path, monkeypatch):
    """imageio-ffmpeg's default pre-exec function makes Python fork this process (weights and all) for
    every clip; without it Python uses vfork. A user's own IMAGEIO_FFMPEG_NO_PREVENT_SIGINT=0 stays."""
    import subprocess

    started = []
    popen = subprocess.Popen

    def spy(*args, **kwargs):
        started.append(kwargs.get("preexec_fn"))
        return popen(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", spy)
    monkeypatch.delenv("IMAGEIO_FFMPEG_NO_PREVENT_SIGINT", raising=False)
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    write_clip(frames, tmp_path / "a.mp4", fps=16)
    assert len(read_frames(tmp_path / "a.mp4")) == len(read_frames_at(tmp_path / "a.mp4", [1])) + 2
    assert started == [None, None, None]

    started.clear()
    monkeypatch.setenv("IMAGEIO_FFMPEG_NO_PREVENT_SIGINT", "0")
    write_clip(frames, tmp_path / "b.mp4", fps=16)
    assert started and started[0] is not None
