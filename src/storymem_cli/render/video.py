"""MP4 in and out with the ffmpeg that imageio-ffmpeg ships (no system ffmpeg needed).

Shots are encoded once, as H.264; the story is joined by stream copy (ffmpeg's
concat demuxer), so joining never re-encodes and story.mp4 has exactly the
frames of its clips. Every output goes through a temporary name and a rename.
"""

from __future__ import annotations

import errno
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
    import imageio_ffmpeg

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
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
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
