"""Memory-to-Video on diffusers' Wan2.2 image-to-video pipeline (SPEC 2-4).

A subclass of ``WanImageToVideoPipeline``, so ``from_pretrained``, offloading and the LoRA mixin keep
working; only ``check_inputs`` and ``__call__`` are new. One call generates one shot conditioned on
M memory images (each its own latent frame placed before the shot along time) and, for MI2V / MM2V,
on the shot's known first frames.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import WanImageToVideoPipeline
from diffusers.pipelines.wan.pipeline_output import WanPipelineOutput
from diffusers.utils.torch_utils import get_module_execution_device, randn_tensor

from storymem_cli.config import (
    MOTION_FRAMES_MM2V,
    TEXT_ENCODER_MAX_TOKENS,
    WAN_DEFAULT_NEGATIVE_PROMPT,
    RopeConfig,
)
from storymem_cli.pipeline.layout import (
    concat_time,
    condition_mask,
    drop_memory,
    frame_positions,
    latent_frame_count,
    memory_batch,
    memory_latents_in_time,
    shot_condition_video,
)
from storymem_cli.pipeline.rope import install_story_rope, rope_positions
from storymem_cli.pipeline.sigmas import (
    NUM_TRAIN_TIMESTEPS,
    expert_for_timestep,
    release_base_sigmas,
)

ENCODED_KEPT = 4  # VAE latents kept per pipeline (memory sets and zero condition videos)

# Memory images keep their aspect ratio: scaled to cover the shot, then centre-cropped. The
# release stretches them; docs/memory.md ("Reference images of another size") says why not.
MEMORY_RESIZE_MODE = "crop"


def _to_pil(images: Sequence[np.ndarray]) -> list[PIL.Image.Image]:
    return [PIL.Image.fromarray(np.ascontiguousarray(img)) for img in images]


class StoryMemM2VPipeline(WanImageToVideoPipeline):
    """Wan2.2 I2V A14B with memory conditioning: M2V, MI2V (1 known first frame) and MM2V (5).

    Both experts' ``rope`` is replaced by :class:`StoryRotaryPosEmbed` as they are registered, so
    offloading attached later (group offload tracks the modules present when it is enabled) moves
    the story rope with the rest of the expert; the constructor is diffusers' own.
    """

    def register_modules(self, **kwargs: Any) -> None:
        for name in ("transformer", "transformer_2"):
            if kwargs.get(name) is not None:
                install_story_rope(kwargs[name])
        if "vae" in kwargs:  # latents of another VAE are no use
            self._encoded: dict[tuple, torch.Tensor] = {}
        super().register_modules(**kwargs)

    @property
    def do_classifier_free_guidance(self) -> bool:
        return max(self._guidance_scale, self._guidance_scale_2 or 0.0) > 1

    def check_inputs(  # type: ignore[override]
        self,
        prompt: str,
        negative_prompt: str | None,
        memory_images: Sequence[np.ndarray],
        first_frames: Sequence[np.ndarray],
        height: int,
        width: int,
        num_frames: int,
        num_inference_steps: int,
        boundary_ratio: float,
        callback_on_step_end_tensor_inputs: Sequence[str] | None,
    ) -> None:
        if not isinstance(prompt, str) or not prompt:
            raise ValueError(f"`prompt` must be a non-empty string, got {prompt!r}")
        if negative_prompt is not None and not isinstance(negative_prompt, str):
            raise ValueError(f"`negative_prompt` must be a string or None, got {type(negative_prompt).__name__}")
        multiple = self.vae_scale_factor_spatial * self.transformer.config.patch_size[1]
        if height % multiple or width % multiple:
            raise ValueError(f"`height` and `width` must be multiples of {multiple}, got {height} and {width}")
        if num_frames < 1 or num_frames % self.vae_scale_factor_temporal != 1:
            raise ValueError(f"`num_frames` must be 4k+1, got {num_frames}")
        if num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be >= 1, got {num_inference_steps}")
        if not 0 < boundary_ratio < 1:
            raise ValueError(f"`boundary_ratio` must be in (0, 1), got {boundary_ratio}")
        for name, images in (("memory_images", memory_images), ("first_frames", first_frames)):
            for i, img in enumerate(images):
                if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                    raise ValueError(f"`{name}[{i}]` must be an (H, W, 3) uint8 array")
        if len(first_frames) not in (0, 1, MOTION_FRAMES_MM2V):
            raise ValueError(
                f"`first_frames` must hold 0 (M2V), 1 (MI2V) or {MOTION_FRAMES_MM2V} (MM2V) frames, got {len(first_frames)}"
            )
        if len(first_frames) >= num_frames:
            raise ValueError(f"`first_frames` ({len(first_frames)}) must be fewer than `num_frames` ({num_frames})")
        if self.transformer.config.image_dim is not None:
            raise ValueError("this transformer expects CLIP image embeddings (Wan2.1 I2V); M2V needs Wan2.2 I2V")
        if callback_on_step_end_tensor_inputs is not None:
            unknown = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
            if unknown:
                raise ValueError(f"`callback_on_step_end_tensor_inputs` has unknown entries {unknown}")

    # -- latent helpers -------------------------------------------------------------------------------

    def _latent_stats(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.vae.config.z_dim
        mean = torch.tensor(self.vae.config.latents_mean).view(1, z, 1, 1, 1).to(device, dtype)
        inv_std = 1.0 / torch.tensor(self.vae.config.latents_std).view(1, z, 1, 1, 1).to(device, dtype)
        return mean, inv_std

    def encode_pixels(self, video: torch.Tensor, device: torch.device) -> torch.Tensor:
        """VAE-encode (B, 3, F, H, W) pixels in [-1, 1] to normalised latents, like the I2V condition."""
        video = video.to(device=get_module_execution_device(self.vae), dtype=self.vae.dtype)
        latents = self.vae.encode(video).latent_dist.mode().to(device=device, dtype=torch.float32)
        mean, inv_std = self._latent_stats(device, torch.float32)
        return (latents - mean) * inv_std

    def _encode_once(self, key: tuple, encode: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The VAE encodes the same input to the same latents: keep the last few, keyed by what they
        encode (a continuation shot keeps the memory of the shot before; every M2V shot's condition
        video is all zeros)."""
        if key not in self._encoded:
            while len(self._encoded) >= ENCODED_KEPT:
                self._encoded.pop(next(iter(self._encoded)))
            self._encoded[key] = encode()
        return self._encoded[key]

    def encode_memory(
        self, memory_images: Sequence[np.ndarray], height: int, width: int, device: torch.device
    ) -> torch.Tensor:
        """(1, z, M, h, w): each memory image encoded on its own as a 1-frame video (SPEC 2)."""
        if not memory_images:
            h, w = height // self.vae_scale_factor_spatial, width // self.vae_scale_factor_spatial
            return torch.zeros(1, self.vae.config.z_dim, 0, h, w, device=device)

        def encode() -> torch.Tensor:
            pixels = self.video_processor.preprocess(
                _to_pil(memory_images), height=height, width=width, resize_mode=MEMORY_RESIZE_MODE
            )
            return memory_latents_in_time(self.encode_pixels(memory_batch(pixels), device))

        # The whole set is the key: the M images are encoded as one batch, and a batch of another
        # size rounds differently (~1e-6), so reusing single images would change the frames.
        digests = tuple(hashlib.sha256(np.ascontiguousarray(img)).hexdigest() + str(img.shape) for img in memory_images)
        return self._encode_once(("memory", digests, height, width, str(device)), encode)

    def prepare_condition(
        self,
        memory_latents: torch.Tensor,
        first_frames: Sequence[np.ndarray],
        height: int,
        width: int,
        num_frames: int,
        device: torch.device,
    ) -> torch.Tensor:
        """(1, 4 + z, M + T, h, w): the mask, then memory latents followed by the shot's I2V condition."""
        if first_frames:
            known = self.video_processor.preprocess(_to_pil(first_frames), height=height, width=width)
            shot_latents = self.encode_pixels(shot_condition_video(known, num_frames, height, width), device)
        else:  # M2V: an all-zero video, the same for every shot of this size
            shot_latents = self._encode_once(
                ("zeros", num_frames, height, width, str(device)),
                lambda: self.encode_pixels(shot_condition_video(None, num_frames, height, width), device),
            )
        condition = concat_time(memory_latents, shot_latents)
        _, _, _, h, w = condition.shape
        mask = condition_mask(memory_latents.shape[2], num_frames, len(first_frames), h, w).to(device)
        return torch.cat([mask, condition], dim=1)

    def decode(self, latents: torch.Tensor, output_type: str) -> np.ndarray | torch.Tensor:
        latents = latents.to(device=get_module_execution_device(self.vae), dtype=self.vae.dtype)
        mean, inv_std = self._latent_stats(latents.device, latents.dtype)
        video = self.vae.decode(latents / inv_std + mean, return_dict=False)[0]
        return self.video_processor.postprocess_video(video, output_type=output_type)

    # -- the call --------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(  # type: ignore[override]
        self,
        prompt: str,
        negative_prompt: str | None = None,
        memory_images: Sequence[np.ndarray] = (),
        first_frames: Sequence[np.ndarray] = (),
        height: int = 480,
        width: int = 832,
        num_frames: int = 81,
        num_inference_steps: int = 40,
        guidance_scale: float = 3.5,
        guidance_scale_2: float | None = None,
        boundary_ratio: float | None = None,
        sigmas: Sequence[float] | None = None,
        rope: RopeConfig | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable[..., dict] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        max_sequence_length: int = TEXT_ENCODER_MAX_TOKENS,
    ) -> WanPipelineOutput | tuple:
        """Generate one shot.

        ``memory_images``: (H, W, 3) uint8 keyframes, any size. ``first_frames``: 1 (MI2V) or 5 (MM2V)
        known opening frames, or none (M2V). ``sigmas``: unshifted sigmas for the scheduler; None uses
        the release's schedule (SPEC 4), shifted by the scheduler's ``flow_shift``. ``boundary_ratio``:
        None uses the pipeline config. ``latents``: (1, z, M + T, h, w) initial noise.
        ``negative_prompt_embeds``: the negative prompt already encoded (it is the same for every
        shot), used instead of ``negative_prompt``. With
        ``output_type="latent"`` the shot's latents (memory frames dropped) are returned undecoded.
        """
        rope = rope or RopeConfig()
        boundary_ratio = self.config.boundary_ratio if boundary_ratio is None else boundary_ratio
        negative_prompt = WAN_DEFAULT_NEGATIVE_PROMPT if negative_prompt is None else negative_prompt
        memory_images, first_frames = list(memory_images), list(first_frames)

        # 1. Check inputs
        self.check_inputs(
            prompt, negative_prompt, memory_images, first_frames, height, width, num_frames,
            num_inference_steps, boundary_ratio, callback_on_step_end_tensor_inputs,
        )  # fmt: skip
        self._guidance_scale = guidance_scale
        self._guidance_scale_2 = guidance_scale if guidance_scale_2 is None else guidance_scale_2
        self._attention_kwargs = attention_kwargs
        self._current_timestep = None
        self._interrupt = False
        device = self._execution_device

        # 2. Encode the prompt (and Wan's default negative prompt for guidance)
        transformer_dtype = self.transformer.dtype
        prompt_embeds, negative_embeds = self.encode_prompt(
            prompt=prompt,
            negative_prompt=negative_prompt,
            do_classifier_free_guidance=self.do_classifier_free_guidance,
            negative_prompt_embeds=negative_prompt_embeds,
            max_sequence_length=max_sequence_length,
            device=device,
        )
        prompt_embeds = prompt_embeds.to(transformer_dtype)
        if negative_embeds is not None:
            negative_embeds = negative_embeds.to(transformer_dtype)

        # 3. Timesteps: the release's sigmas through UniPC's flow shift
        if sigmas is None:
            sigmas = release_base_sigmas(num_inference_steps, self.scheduler.config.num_train_timesteps)
        self.scheduler.set_timesteps(sigmas=np.asarray(sigmas, dtype=np.float64), device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)

        # 4. Memory latents and the condition: [memory (M) | shot (T)] along time, with the mask
        memory_latents = self.encode_memory(memory_images, height, width, device)
        condition = self.prepare_condition(memory_latents, first_frames, height, width, num_frames, device)
        num_memory = memory_latents.shape[2]
        num_shot = latent_frame_count(num_frames, self.vae_scale_factor_temporal)

        # 5. Noise over all M + T latent frames
        shape = (1, self.vae.config.z_dim, num_memory + num_shot, *condition.shape[-2:])
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"`latents` must have shape {shape}, got {tuple(latents.shape)}")
        else:
            latents = latents.to(device=device, dtype=torch.float32)

        # 6. Denoise: high-noise expert for t >= boundary, low-noise expert after
        positions = frame_positions(num_memory, num_shot, rope)
        experts = {"high": (self.transformer, self._guidance_scale), "low": (self.transformer_2, self._guidance_scale_2)}
        with rope_positions((self.transformer, self.transformer_2), positions, memory_frames=num_memory):
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                self._current_timestep = t
                model, scale = experts[expert_for_timestep(float(t), boundary_ratio, NUM_TRAIN_TIMESTEPS)]
                model_input = torch.cat([latents, condition], dim=1).to(transformer_dtype)
                timestep = t.expand(latents.shape[0])

                # where the loop is, for diffusers' step-caching hooks (as WanPipeline passes it)
                step = {"step_index": i, "sigma": float(self.scheduler.sigmas[i]), "num_inference_steps": len(timesteps)}

                def predict(embeds: torch.Tensor, cache: str) -> torch.Tensor:
                    with model.cache_context(cache, **step):
                        return model(
                            hidden_states=model_input,
                            timestep=timestep,
                            encoder_hidden_states=embeds,
                            attention_kwargs=attention_kwargs,
                            return_dict=False,
                        )[0]

                noise_pred = predict(prompt_embeds, "cond")
                if scale > 1:  # guidance 1 (a step-distilled LoRA): no unconditional pass at all
                    noise_uncond = predict(negative_embeds, "uncond")
                    noise_pred = noise_uncond + scale * (noise_pred - noise_uncond)
                latents = self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]

                if callback_on_step_end is not None:
                    local = {"latents": latents, "prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_embeds}
                    kwargs = {k: local[k] for k in callback_on_step_end_tensor_inputs}
                    outputs = callback_on_step_end(self, i, t, kwargs) or {}
                    latents = outputs.pop("latents", latents)
        self._current_timestep = None

        # 7. Drop the memory frames and decode the shot
        latents = drop_memory(latents, num_memory)
        video = latents if output_type == "latent" else self.decode(latents, output_type)

        self.maybe_free_model_hooks()
        if not return_dict:
            return (video,)
        return WanPipelineOutput(frames=video)
