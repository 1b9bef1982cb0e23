"""MP4 in and out with the ffmpeg that imageio-ffmpeg ships (no system ffmpeg needed).

Shots are encoded once, as H.264; the story is joined by stream copy (ffmpeg's
concat demuxer), so joining never re-encodes and story.mp4 has exactly the
frames of its clips. Every output goes through a temporary name and a rename.
"""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from storymem_cli.errors import StorymemError
from storymem_cli.render.atomic import atomic_path

CRF = 18  # x264 constant quality: visually lossless; keyframes never come from the mp4 anyway
PRESET = "medium"  # x264 speed/size trade-off; the clips are tiny next to the diffusion time
MAX_SIDE = 16384  # libx264 refuses wider or taller frames ("invalid width x height")


def _imageio_ffmpeg():
    """imageio_ffmpeg, told to start ffmpeg without a pre-exec function. It keeps Ctrl-C from ffmpeg
    with ``preexec_fn=os.setpgrp``, which makes Python fork the whole process, page tables and all, for
    every clip (70 ms on a CPU test, more beside loaded experts, and ENOMEM under strict overcommit)
    instead of vfork. Nothing needs ffmpeg to outlive a Ctrl-C: every file goes through a temporary
    name, and the interrupted shot is rendered again. ``IMAGEIO_FFMPEG_NO_PREVENT_SIGINT=0`` set by a
    user is left as it is."""
    import imageio_ffmpeg

    os.environ.setdefault("IMAGEIO_FFMPEG_NO_PREVENT_SIGINT", "1")
    return imageio_ffmpeg


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def upscale_nearest(frames: np.ndarray, factor: int) -> np.ndarray:
    """``(F, H, W, C)`` frames ``factor`` times larger on H and W, each pixel a factor x factor block."""
    if factor < 1:
        raise ValueError(f"upscale factor must be at least 1, got {factor}")
    if factor == 1:
        return frames
    return np.repeat(np.repeat(frames, factor, axis=-3), factor, axis=-2)


def write_clip(frames: np.ndarray, path: Path, fps: int) -> None:
    """Encode ``(F, H, W, 3)`` uint8 RGB frames to ``path`` (H.264, yuv420p), atomically."""
    imageio_ffmpeg = _imageio_ffmpeg()

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (F, H, W, 3), got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp),
            (width, height),
            fps=fps,
            quality=None,
            codec="libx264",
            macro_block_size=2,  # yuv420p needs even sides; never rescale silently beyond that
            output_params=["-crf", str(CRF), "-preset", PRESET, "-movflags", "+faststart"],
        )
        try:
            writer.send(None)
            for frame in frames:
                writer.send(np.ascontiguousarray(frame))
            writer.close()
        except OSError as err:
            # imageio reports ffmpeg's death (a full disk, most often) as a bare IOError.
            raise OSError(errno.EPIPE, f"ffmpeg stopped while writing {path}: {str(err).splitlines()[0]}") from None
        # imageio-ffmpeg does not check ffmpeg's exit status: an encoder that refused to start
        # leaves an empty file behind, which must not be renamed into place as a finished clip.
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise OSError(errno.EPIPE, f"ffmpeg wrote nothing for {path} ({width}x{height}, {len(frames)} frames)")


def read_frames(path: Path) -> np.ndarray:
    """Decode a video to ``(F, H, W, 3)`` uint8 RGB."""
    return _decode(path, [])


def read_frames_at(path: Path, indices: Sequence[int]) -> np.ndarray:
    """Decode only frames ``indices`` (0-based, ascending, no repeats) of a video, ``(len, H, W, 3)``
    uint8 RGB, in one ffmpeg pass: ffmpeg's select filter drops the others before they reach the pipe
    (a preview of 12 shots of 81 frames reads 12 frames, not 972, from one process, not 12)."""
    wanted = list(indices)
    if not wanted:
        raise ValueError("no frame indices to read")
    if wanted != sorted(set(wanted)) or wanted[0] < 0:
        raise ValueError(f"frame indices must be ascending, distinct and not negative, got {wanted}")
    # Inside a filtergraph a comma separates filters, so the ones inside eq(...) are escaped. setpts
    # numbers the kept frames 0, 1, 2, ...: the output's constant frame rate then repeats none of them
    # (-fps_mode passthrough would too, but ffmpeg before 5.1, as imageio-ffmpeg 0.5.0 ships, lacks it).
    select = "select=" + "+".join(f"eq(n\\,{i})" for i in wanted) + ",setpts=N/FRAME_RATE/TB"
    frames = _decode(path, ["-vf", select])
    if len(frames) != len(wanted):
        raise OSError(errno.EIO, f"{path} gave {len(frames)} of the frames {wanted}: fewer than its record says")
    return frames


def _decode(path: Path, output_params: list[str]) -> np.ndarray:
    """What ffmpeg outputs for ``path`` with ``output_params``, as ``(F, H, W, 3)`` uint8 RGB."""
    reader = _imageio_ffmpeg().read_frames(str(path), output_params=output_params)
    meta = next(reader)
    width, height = meta["size"]
    frames = [np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3) for buf in reader]
    return np.stack(frames) if frames else np.zeros((0, height, width, 3), np.uint8)


def _concat_line(path: Path) -> str:
    # concat demuxer syntax: single-quoted, a quote written as '\''
    escaped = str(path.resolve()).replace("'", "'\\''")
    return f"file '{escaped}'\n"


def join_clips(clips: Sequence[Path], output: Path) -> None:
    """Join clips (same size, codec and fps) into ``output`` by stream copy, atomically."""
    if not clips:
        raise ValueError("no clips to join")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as listing:
        listing.writelines(_concat_line(Path(clip)) for clip in clips)
    try:
        with atomic_path(output) as tmp:
            command = [_ffmpeg(), "-y", "-loglevel", "error", "-f", "concat", "-safe", "0"]
            command += ["-i", listing.name, "-c", "copy", "-movflags", "+faststart", str(tmp)]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                if "No space left" in result.stderr:
                    raise OSError(errno.ENOSPC, result.stderr.strip())
                raise StorymemError(f"ffmpeg could not join the shots into {output}: {result.stderr.strip()}")
    finally:
        Path(listing.name).unlink(missing_ok=True)
