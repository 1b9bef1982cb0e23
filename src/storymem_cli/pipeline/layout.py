"""Where memory sits in the latent video: condition, mask, positions (SPEC 2, 3), as pure functions.

Layout along latent time: ``[memory_0 .. memory_{M-1}, shot_0 .. shot_{T-1}]``, T = (F - 1) / 4 + 1.
"""

from __future__ import annotations

import torch

from storymem_cli.config import VAE_TEMPORAL_STRIDE, RopeConfig


def latent_frame_count(frames: int, temporal_stride: int = VAE_TEMPORAL_STRIDE) -> int:
    """Latent frames of an F-frame video: the first frame alone, then one per ``temporal_stride``."""
    return (frames - 1) // temporal_stride + 1


def condition_mask(
    memory_frames: int,
    frames: int,
    known_frames: int,
    latent_height: int,
    latent_width: int,
    temporal_stride: int = VAE_TEMPORAL_STRIDE,
) -> torch.Tensor:
    """The (1, stride, M + T, h, w) mask: 1 on memory, 1 on the shot's known pixel frames, 0 elsewhere.

    The shot part is built per pixel frame and folded like diffusers' I2V mask (the first frame
    repeated ``stride`` times, then ``stride`` pixel frames per latent frame), so 1 known frame
    marks latent 0 and 5 known frames mark latents 0 and 1.
    """
    pixel = torch.zeros(frames)
    pixel[:known_frames] = 1.0
    folded = torch.cat([pixel[:1].repeat(temporal_stride), pixel[1:]])
    shot = folded.view(-1, temporal_stride).transpose(0, 1)  # (stride, T)
    memory = torch.ones(temporal_stride, memory_frames)
    mask = torch.cat([memory, shot], dim=1)
    return mask[None, :, :, None, None].expand(1, temporal_stride, -1, latent_height, latent_width).contiguous()


def shot_condition_video(known: torch.Tensor | None, frames: int, height: int, width: int) -> torch.Tensor:
    """(1, 3, F, H, W) pixels to VAE-encode as the shot condition: known frames first, zeros after.

    ``known`` is (K, 3, H, W) in [-1, 1] (MI2V: K = 1, MM2V: K = 5) or None (M2V: all zeros).
    """
    video = torch.zeros(1, 3, frames, height, width)
    if known is not None and known.shape[0]:
        video = video.to(dtype=known.dtype, device=known.device)
        video[0, :, : known.shape[0]] = known.transpose(0, 1)
    return video


def memory_batch(images: torch.Tensor) -> torch.Tensor:
    """(M, 3, H, W) memory images -> (M, 3, 1, H, W): each its own 1-frame video for the VAE."""
    return images.unsqueeze(2)


def memory_latents_in_time(latents: torch.Tensor) -> torch.Tensor:
    """(M, C, 1, h, w) per-image latents -> (1, C, M, h, w), memory frames along latent time."""
    return latents.squeeze(2).transpose(0, 1).unsqueeze(0)


def concat_time(*latents: torch.Tensor) -> torch.Tensor:
    """Concatenate latent videos (B, C, T, h, w) along time."""
    return torch.cat(latents, dim=2)


def drop_memory(latents: torch.Tensor, memory_frames: int) -> torch.Tensor:
    """The shot's own latent frames: memory positions are denoised too but thrown away."""
    return latents[:, :, memory_frames:]


def frame_positions(memory_frames: int, shot_frames: int, rope: RopeConfig) -> tuple[float, ...]:
    """Temporal RoPE position of every latent frame (SPEC 3).

    ``negative`` (paper): memory at -M*S, ..., -2S, -S and the shot at 0..T-1, so the shot keeps the
    positions the base model was trained with. ``sequential`` (release e027735): 0..M+T-1.
    """
    if rope.mode == "sequential":
        return tuple(float(i) for i in range(memory_frames + shot_frames))
    memory = [-(memory_frames - k) * rope.shift for k in range(memory_frames)]
    return tuple(memory) + tuple(float(i) for i in range(shot_frames))
