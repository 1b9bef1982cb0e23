"""One training step's math: samples -> latents and condition (the inference code), noise, the loss.

Rectified flow (paper eq. 2-3) in the convention of diffusers' flow-matching schedulers, which our
UniPC sampler uses (``prediction_type="flow_prediction"``: x0 = x_t - sigma * v):

    x_t = (1 - sigma) * x0 + sigma * noise,    v_target = noise - x0,    timestep = sigma * 1000

The noisy latent spans memory and shot frames, like inference; the loss is on the shot's frames only
(memory positions are conditioning and are thrown away at inference). The memory latents, the shot's
I2V condition and the mask come from ``StoryMemM2VPipeline.encode_memory`` / ``prepare_condition``,
and temporal positions from ``pipeline.layout.frame_positions`` through the same rope module.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from storymem_cli.config import TEXT_ENCODER_MAX_TOKENS, RopeConfig
from storymem_cli.pipeline.layout import (
    concat_time,
    frame_positions,
    latent_frame_count,
)
from storymem_cli.pipeline.m2v import MEMORY_RESIZE_MODE, StoryMemM2VPipeline, _to_pil
from storymem_cli.pipeline.rope import rope_positions
from storymem_cli.pipeline.sigmas import NUM_TRAIN_TIMESTEPS, shift_sigmas
from storymem_cli.train.data import Sample
from storymem_cli.train.vae import chroma

TEXT_CACHE_SIZE = 4096  # captions whose (trimmed) embeddings are kept while the text encoder is frozen


# --------------------------------------------------------------------------- timesteps


def sigma_from_u(u: torch.Tensor | float, sampling: str, shift: float):
    """Inverse CDF of the training sigma distribution: uniform, or uniform pushed through the flow shift."""
    return shift_sigmas(u, shift) if sampling == "shifted" else u


def u_from_sigma(sigma: float, sampling: str, shift: float) -> float:
    """The CDF: the share of training sigmas below ``sigma``."""
    if sampling == "uniform":
        return sigma
    return sigma / (shift - (shift - 1.0) * sigma)


def u_range(expert: str | None, boundary: float, sampling: str, shift: float) -> tuple[float, float]:
    """The slice of [0, 1) whose sigmas belong to an expert: high-noise sigma >= boundary, low below."""
    cut = u_from_sigma(boundary, sampling, shift)
    return {"high": (cut, 1.0), "low": (0.0, cut), None: (0.0, 1.0)}[expert]


def draw_sigmas(generator: torch.Generator, n: int, u_lo: float, u_hi: float, sampling: str, shift: float) -> torch.Tensor:
    u = u_lo + (u_hi - u_lo) * torch.rand(n, generator=generator, dtype=torch.float64)
    return sigma_from_u(u, sampling, shift).float()


def flow_pair(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, velocity target) for per-sample ``sigma`` of shape (B,)."""
    s = sigma.view(-1, *([1] * (x0.ndim - 1))).to(x0)
    return (1.0 - s) * x0 + s * noise, noise - x0


# --------------------------------------------------------------------------- encoding


@dataclass
class EncodedBatch:
    x0: torch.Tensor  # (B, z, M + T, h, w): memory latents then the target's latents
    condition: torch.Tensor | None  # (B, 4 + z, M + T, h, w) mask + condition; None for a T2V batch
    prompt_embeds: torch.Tensor  # (B, L, D), zero-padded to the text encoder's max length like inference
    memory_frames: int  # M
    loss_weights: torch.Tensor | None = None  # (B, 1, T, h, w) over the shot's latents; None: uniform

    @property
    def shot_frames(self) -> int:
        return self.x0.shape[2] - self.memory_frames


class TextCache:
    """Prompt embeddings by caption while the text encoder is frozen (rows past the prompt are zeros)."""

    def __init__(self, size: int = TEXT_CACHE_SIZE):
        self.size = size
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()

    def encode(self, pipe: StoryMemM2VPipeline, captions: list[str], device: torch.device, frozen: bool) -> torch.Tensor:
        if not frozen:  # a trained encoder runs every step: on the captions' tokens, not 512 positions
            return self._encode(pipe, captions, device, prompt_tokens(pipe, captions))
        for caption in dict.fromkeys(c for c in captions if c not in self._items):
            with torch.no_grad():  # one prompt at a time, as inference encodes it: the same numbers
                emb = self._encode(pipe, [caption], device)[0]
            rows = (emb.abs().sum(-1) > 0).nonzero()
            self._items[caption] = emb[: int(rows.max()) + 1 if len(rows) else 0].clone()
            if len(self._items) > self.size:
                self._items.popitem(last=False)
        out = []
        for caption in captions:
            self._items.move_to_end(caption)
            emb = self._items[caption]
            out.append(torch.cat([emb, emb.new_zeros(TEXT_ENCODER_MAX_TOKENS - emb.shape[0], emb.shape[1])]))
        return torch.stack(out)

    @staticmethod
    def _encode(
        pipe: StoryMemM2VPipeline, captions: list[str], device: torch.device, length: int = TEXT_ENCODER_MAX_TOKENS
    ) -> torch.Tensor:
        """Embeddings as inference makes them: ``length`` token positions, then zero rows up to the max."""
        embeds, _ = pipe.encode_prompt(
            prompt=captions, do_classifier_free_guidance=False, max_sequence_length=length, device=device,
        )  # fmt: skip
        if embeds.shape[1] < TEXT_ENCODER_MAX_TOKENS:
            embeds = F.pad(embeds, (0, 0, 0, TEXT_ENCODER_MAX_TOKENS - embeds.shape[1]))
        return embeds


def prompt_tokens(pipe: StoryMemM2VPipeline, captions: list[str]) -> int:
    """Token count of the longest caption as the pipeline tokenizes it (cleaned, with EOS).

    The encoder masks padding, so running it on this many positions gives the real tokens the same
    embeddings as the pipeline's 512 (relative position biases only see distances). On the toy model a
    trained text encoder at 512 positions spent 39% of a training step in its forward pass alone, and
    most of the backward (py-spy); on the captions' tokens, 4%."""
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean

    ids = pipe.tokenizer([prompt_clean(c) for c in captions], add_special_tokens=True, truncation=True,
                         max_length=TEXT_ENCODER_MAX_TOKENS)["input_ids"]  # fmt: skip
    return max(1, max(len(i) for i in ids))


def video_pixels(pipe: StoryMemM2VPipeline, frames: np.ndarray, height: int, width: int) -> torch.Tensor:
    """(1, 3, F, H, W) in [-1, 1]: a uint8 clip resized like memory images."""
    pixels = pipe.video_processor.preprocess(_to_pil(list(frames)), height=height, width=width, resize_mode=MEMORY_RESIZE_MODE)
    return pixels.transpose(0, 1).unsqueeze(0)


def encode_video(pipe: StoryMemM2VPipeline, frames: np.ndarray, height: int, width: int, device: torch.device) -> torch.Tensor:
    """(1, z, T, h, w) normalised latents of a uint8 clip, like the pipeline's I2V condition."""
    return pipe.encode_pixels(video_pixels(pipe, frames, height, width), device)


class LatentCache:
    """Memoises the pipeline's VAE encode (``pipe.encode_pixels``) by the exact pixels it is given.

    The VAE is frozen while the transformer trains, so a clip, a memory frame or a condition video
    always encodes to the same latents; on a CPU the VAE costs far more than a small transformer.
    Keys are a hash of the pixel tensor, so the cache cannot serve latents of other pixels.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes, self.bytes, self.hits, self.misses = max_bytes, 0, 0, 0
        self._items: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    def install(self, pipe: StoryMemM2VPipeline) -> None:
        encode = pipe.encode_pixels

        def cached(video: torch.Tensor, device: torch.device) -> torch.Tensor:
            pixels = video.detach().to("cpu").contiguous()
            key = (tuple(pixels.shape), str(pixels.dtype), hashlib.blake2b(pixels.numpy().tobytes(), digest_size=16).hexdigest(), str(device))
            if key in self._items:
                self.hits += 1
                self._items.move_to_end(key)
                return self._items[key]
            self.misses += 1
            latents = encode(video, device)
            self._items[key] = latents
            self.bytes += latents.numel() * latents.element_size()
            while self.bytes > self.max_bytes and self._items:
                _, old = self._items.popitem(last=False)
                self.bytes -= old.numel() * old.element_size()
            return latents

        pipe.encode_pixels = cached  # the instance attribute wins: the pipeline's own calls go through the cache

    @staticmethod
    def vae_tag(vae: torch.nn.Module) -> str:
        """Identifies the VAE's weights: a saved cache is only reused with the very same VAE."""
        digest = hashlib.blake2b(digest_size=16)
        for name, tensor in sorted(vae.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
        return digest.hexdigest()

    def save(self, path: Path, tag: str) -> None:
        """Write the cache (temp file + rename), so the next stage of a run starts warm."""
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        torch.save({"tag": tag, "keys": list(self._items), "latents": [t.to("cpu") for t in self._items.values()]}, tmp)
        os.replace(tmp, path)

    def load(self, path: Path, tag: str, device: torch.device) -> int:
        """Entries read from ``path`` (0 when absent or made with another VAE)."""
        if not path.is_file():
            return 0
        from storymem_cli.models.safe_load import torch_load

        data = torch_load(path, what="latent cache", hint=f"delete {path}: it is rebuilt from the clips")
        if not isinstance(data, dict) or data.get("tag") != tag:
            return 0
        for key, latents in zip(data["keys"], data["latents"]):
            if self.bytes + latents.numel() * latents.element_size() > self.max_bytes:
                break
            self._items[tuple(key)] = latents.to(device)
            self.bytes += latents.numel() * latents.element_size()
        return len(self._items)


def latent_chroma_weights(pixels: torch.Tensor, chroma_weight: float, spatial: int, temporal: int) -> torch.Tensor:
    """(B, 1, T, h, w) loss weights on a video's latent grid: 1 + chroma_weight * mean chroma of the pixels
    each latent covers (the first frame alone, then ``temporal`` frames each, ``spatial`` pixels square).

    The toy world's characters are 10-20% of a frame and its settings the rest, so under the plain velocity
    loss a small model learns settings and a blurred "average character" long before it learns to take
    the character's look from the text or the memory (docs/training.md). This is the flow-loss sibling
    of the VAE stage's ``pixel_weights``; at 0 the loss is the paper's.
    """
    per_pixel = chroma(pixels)  # (B, 1, F, H, W) in [0, 1]
    b, _, f, h, w = per_pixel.shape
    rest = per_pixel[:, :, 1:].reshape(b, 1, (f - 1) // temporal, temporal, h, w).mean(dim=3)
    folded = torch.cat([per_pixel[:, :, :1], rest], dim=2)  # (B, 1, T, H, W)
    pooled = F.avg_pool3d(folded, kernel_size=(1, spatial, spatial))
    return 1.0 + chroma_weight * pooled


@torch.no_grad()
def encode_sample(pipe: StoryMemM2VPipeline, sample: Sample, height: int, width: int, device: torch.device):
    """(x0, condition) of one sample with the inference pipeline's own encoders (VAE frozen)."""
    target = encode_video(pipe, sample.video, height, width, device)
    if sample.kind == "t2v":
        return target, None
    # one image at a time (the same latents as a batch, SPEC 2), so each frame is cached on its own
    memory = concat_time(pipe.encode_memory([], height, width, device),
                         *(pipe.encode_memory([image], height, width, device) for image in sample.memory))  # fmt: skip
    condition = pipe.prepare_condition(memory, sample.first_frames, height, width, len(sample.video), device)
    return concat_time(memory, target), condition


def encode_batch(
    pipe: StoryMemM2VPipeline,
    samples: list[Sample],
    height: int,
    width: int,
    device: torch.device,
    text: TextCache,
    text_frozen: bool = True,
    chroma_weight: float = 0.0,
) -> EncodedBatch:
    pairs = [encode_sample(pipe, s, height, width, device) for s in samples]
    x0 = torch.cat([p[0] for p in pairs])
    condition = None if pairs[0][1] is None else torch.cat([p[1] for p in pairs])
    embeds = text.encode(pipe, [s.caption for s in samples], device, text_frozen)
    memory = len(samples[0].memory) if samples[0].kind == "m2v" else 0
    assert x0.shape[2] == memory + latent_frame_count(len(samples[0].video), pipe.vae_scale_factor_temporal)
    weights = None
    if chroma_weight > 0:  # from the raw frames: the weights need no more precision than an area resize
        clips = torch.from_numpy(np.stack([s.video for s in samples])).float().div(127.5).sub(1.0)  # (B, F, H, W, 3)
        pixels = clips.permute(0, 4, 1, 2, 3)
        if pixels.shape[-2:] != (height, width):
            pixels = F.interpolate(pixels, size=(pixels.shape[2], height, width), mode="area")
        weights = latent_chroma_weights(pixels.to(device), chroma_weight, pipe.vae_scale_factor_spatial,
                                        pipe.vae_scale_factor_temporal)  # fmt: skip
    return EncodedBatch(x0, condition, embeds, memory, weights)


# --------------------------------------------------------------------------- the loss


def predict_velocity(
    transformer: torch.nn.Module,
    batch: EncodedBatch,
    x_t: torch.Tensor,
    sigma: torch.Tensor,
    rope: RopeConfig,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The transformer's velocity over all of ``x_t``'s frames (memory and shot), with the batch's
    condition, prompt and the memory's RoPE positions, as inference runs it."""
    model_input = x_t if batch.condition is None else torch.cat([x_t, batch.condition], dim=1)
    positions = frame_positions(batch.memory_frames, batch.shot_frames, rope)
    device_type = model_input.device.type
    with rope_positions([transformer], positions), torch.autocast(
        device_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
    ):
        return transformer(
            hidden_states=model_input,
            timestep=(sigma * NUM_TRAIN_TIMESTEPS).to(model_input.device),
            encoder_hidden_states=batch.prompt_embeds,
            return_dict=False,
        )[0]


def flow_loss(
    transformer: torch.nn.Module,
    batch: EncodedBatch,
    sigma: torch.Tensor,
    noise: torch.Tensor,
    rope: RopeConfig,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Mean squared velocity error over the shot's latent frames (memory frames excluded), weighted by
    ``batch.loss_weights`` when set (a weighted mean: the loss keeps its scale)."""
    x_t, target = flow_pair(batch.x0, noise, sigma)
    pred = predict_velocity(transformer, batch, x_t, sigma, rope, autocast_dtype)
    m = batch.memory_frames
    if batch.loss_weights is None:
        return F.mse_loss(pred[:, :, m:].float(), target[:, :, m:].float())
    w = batch.loss_weights.float()
    se = (pred[:, :, m:].float() - target[:, :, m:].float()).pow(2)
    return (se * w).sum() / (w.sum() * se.shape[1])
