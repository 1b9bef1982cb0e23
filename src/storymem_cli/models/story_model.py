"""The loaded story model: shared text encoder + VAE, and the T2V and M2V pairs of experts.

The T2V pair (first shot, and every cut with --no-memory) and the M2V pair (the other shots) are
loaded on demand. Both stay loaded when the second fits beside the first (models/residency.py);
otherwise the held pair is released before the other loads, so a story needs memory for two
experts, not four.
"""

from __future__ import annotations

import functools
import gc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from storymem_cli.config import (
    TEXT_ENCODER_MAX_TOKENS,
    WAN_DEFAULT_NEGATIVE_PROMPT,
    RopeConfig,
    SamplingConfig,
)
from storymem_cli.errors import InvalidInputError, MissingWeightsError, StorymemError
from storymem_cli.models.lora_files import lora_variant, storymem_hub_files
from storymem_cli.models.presets import LORA_VARIANT_DIRS, TINY, TOY, ModelPreset
from storymem_cli.models.runtime import ModelOptions, RuntimeOptions, auto_dtype, default_device
from storymem_cli.models.tiny import tiny_model_dir
from storymem_cli.models.weights import (
    I2V_COMPONENTS,
    T2V_COMPONENTS,
    check_components,
    download_command,
    locate_source,
)
from storymem_cli.pipeline.request import ShotRequest
from storymem_cli.pipeline.sigmas import base_sigmas

Kind = Literal["t2v", "m2v"]
Progress = Callable[[int, int], None]


def resolve_device(runtime: RuntimeOptions) -> torch.device:
    return torch.device(runtime.device or default_device())


def resolve_dtype(name: str, runtime: RuntimeOptions, device: torch.device) -> torch.dtype:
    """The preset's dtype on an accelerator, float32 on CPU, unless the user chose one."""
    return getattr(torch, auto_dtype(name, device.type) if runtime.dtype == "auto" else runtime.dtype)


def builtin_model_dir(preset: ModelPreset) -> Path:
    """The cache folder a built-in preset is materialised into: toy from its packaged weights, tiny from code."""
    if preset.name == TOY.name:
        from storymem_cli.models.toy import toy_model_dir

        return toy_model_dir()
    return tiny_model_dir()


def check_attention_backend(name: str | None) -> None:
    """Fail before loading any weights when the backend name is unknown to diffusers."""
    if name is None:
        return
    from diffusers.models.attention_dispatch import AttentionBackendName

    known = sorted(b.value for b in AttentionBackendName)
    if name.lower() not in (*known, "auto"):
        raise InvalidInputError(f"--attention {name!r}: unknown attention backend", hint=f"use one of: {', '.join(known)}")


def to_uint8(video: np.ndarray) -> np.ndarray:
    """diffusers' float [0, 1] (F, H, W, 3) frames -> uint8."""
    return np.clip(np.round(video * 255.0), 0, 255).astype(np.uint8)


def _lora_api() -> Any:
    try:
        from storymem_cli.models import lora
    except ImportError as err:
        raise StorymemError(
            f"StoryMem LoRA loading is not available in this build ({err})",
            hint="install a storymem release that includes models/lora.py",
        ) from None
    return lora


class StoryModel:
    """Generates shots (``generate``) and says what it is made of (``describe``)."""

    def __init__(
        self,
        preset: ModelPreset,
        runtime: ModelOptions,
        folders: dict[str, Path],
        repos: dict[str, str | None],
        lora_files: tuple[Path, Path] | None,
    ):
        from diffusers import AutoencoderKLWan, UniPCMultistepScheduler
        from transformers import AutoTokenizer, UMT5EncoderModel

        self.preset, self.runtime, self.folders, self.repos = preset, runtime, folders, repos
        self.device = resolve_device(runtime)
        self.dtype = resolve_dtype(preset.transformer_dtype, runtime, self.device)
        text_dtype = resolve_dtype(preset.text_encoder_dtype, runtime, self.device)
        self.lora_files = lora_files
        self.lora_report: dict | None = None
        self.last_rope = RopeConfig()
        self.sampling_used: dict[str, dict[str, Any]] = {}  # pair -> the sampler and shift its last shot ran

        i2v = folders["i2v"]
        self.shared: dict[str, Any] = {
            "tokenizer": AutoTokenizer.from_pretrained(i2v, subfolder="tokenizer"),
            "text_encoder": UMT5EncoderModel.from_pretrained(i2v, subfolder="text_encoder", dtype=text_dtype).eval(),
            "vae": AutoencoderKLWan.from_pretrained(i2v, subfolder="vae", torch_dtype=torch.float32).eval(),
        }  # the VAE stays in fp32 (SPEC 4)
        self.scheduler_config = UniPCMultistepScheduler.load_config(i2v, subfolder="scheduler")
        if runtime.vae_tiling:
            self.shared["vae"].enable_tiling()
        self._group_offloaded: set[str] = set()
        self._negatives: dict[tuple[str, str], torch.Tensor] = {}
        self.attention_backend: str | None = None  # resolved when the first experts load
        self.quantize_method: str | None = None  # --quantize fp8: torchao or layerwise (speed.fp8_method)
        self._cache_notes: set[str] = set()  # --cache warnings already given
        self.offload_streams: Any = None  # --offload group: whether CUDA streams overlap the copies (models/offload.py)
        self._pipes: dict[Kind, Any] = {}  # the pipelines whose experts are loaded: one, or both when they fit
        self._kind: Kind | None = None  # the pipeline the last shot ran
        from storymem_cli.models.magcache import MagCacheRun
        from storymem_cli.models.step_stats import ShotStats

        self.stats = ShotStats()  # the last shot's denoising time and forwards (skipped ones too)
        calibrating = runtime.magcache_calibrate is not None
        self.magcache = MagCacheRun(runtime) if runtime.cache == "magcache" or calibrating else None
        self.pair_loads = 0  # expert pairs loaded by this model (a batch of stories shares it)
        self.style_reports: dict[int, dict[str, Any]] = {}  # style LoRA index -> pair -> what was applied

    @classmethod
    def load(cls, preset: ModelPreset, runtime: ModelOptions) -> StoryModel:
        check_attention_backend(runtime.attention_backend)
        from storymem_cli.models.lora_style import inspect_style_lora

        for path, *_ in runtime.style_loras:  # a bad file fails now, not after the experts load
            inspect_style_lora(path)
        base = builtin_model_dir(preset) if preset.builtin else None
        i2v, i2v_repo = locate_source(preset.i2v_source, base)
        t2v, t2v_repo = locate_source(preset.t2v_source, base)
        check_components(i2v, I2V_COMPONENTS, i2v_repo)
        check_components(t2v, T2V_COMPONENTS, t2v_repo)
        lora_files = cls._find_lora(preset, runtime)
        return cls(preset, runtime, {"i2v": i2v, "t2v": t2v}, {"i2v": i2v_repo, "t2v": t2v_repo}, lora_files)

    @staticmethod
    def _find_lora(preset: ModelPreset, runtime: ModelOptions) -> tuple[Path, Path] | None:
        source = preset.lora_for(runtime.lora)
        if source is None:
            return None
        variant = lora_variant(runtime.continuation)
        folder, repo = locate_source(source)
        if repo is not None and not (folder / LORA_VARIANT_DIRS[variant]).is_dir():
            raise MissingWeightsError(
                f"the StoryMem LoRA {repo}/{LORA_VARIANT_DIRS[variant]} ({variant}) is not in the Hugging Face cache",
                hint=f"download it with: storymem download --continuation {variant} "
                f"(this part alone: {download_command(repo, storymem_hub_files(variant))})",
            )
        high, low = _lora_api().find_storymem_lora_files(folder, variant)
        return Path(high), Path(low)

    # -- pipelines -------------------------------------------------------------------------------------

    def _load_pair(self, kind: Kind) -> tuple[Any, Any]:
        from diffusers import WanTransformer3DModel

        folder = self.folders["t2v" if kind == "t2v" else "i2v"]
        return tuple(
            WanTransformer3DModel.from_pretrained(folder, subfolder=sub, torch_dtype=self.dtype).eval()
            for sub in ("transformer", "transformer_2")
        )  # type: ignore[return-value]

    def _release(self) -> None:
        """Drop every held pair: the one way to free memory before the other pair loads."""
        if not self._pipes:
            return
        if self.runtime.offload == "model":
            for pipe in self._pipes.values():
                pipe.remove_all_hooks()
        self._pipes.clear()
        self._kind = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _room_for_other_pair(self) -> bool:
        from storymem_cli.models.residency import module_bytes, room_for_pair

        held = self._pipes[self._kind]  # type: ignore[index]
        # The other pair has this one's shapes but for the patch embedding's input channels (16 for
        # T2V, 36 for I2V at A14B) and any unfused LoRA adapters: the margin covers the difference.
        return room_for_pair(module_bytes(held.transformer, held.transformer_2), self.device, self.runtime.offload)

    def _activate(self, kind: Kind) -> Any:
        """Run the next shot on a pair already held."""
        pipe = self._pipes[kind]
        if self.runtime.offload == "model":
            # After each call diffusers hooks the pipeline's components anew, the shared text encoder
            # and VAE included: hook them to this pipeline's experts, so that the VAE decode moves this
            # pipeline's low-noise expert off the GPU.
            pipe.enable_model_cpu_offload(device=self.device)
        self._kind = kind
        return pipe

    def pipeline(self, kind: Kind) -> Any:
        """The T2V (``WanPipeline``) or M2V (``StoryMemM2VPipeline``) pipeline, loading its experts on demand
        beside the other pair when it fits, else in its place."""
        if self._kind == kind:
            return self._pipes[kind]
        if kind in self._pipes:
            return self._activate(kind)
        if self._pipes and not self._room_for_other_pair():
            self._release()
        pipe = self._build(kind)
        self._pipes[kind], self._kind = pipe, kind
        return pipe

    def _build(self, kind: Kind) -> Any:
        high, low = self._load_pair(kind)
        self.pair_loads += 1
        if kind == "t2v":
            from storymem_cli.pipeline.t2v import make_t2v_pipeline

            pipe = make_t2v_pipeline(self.shared, high, low, self.scheduler_config, self.preset.t2v)
        else:
            from storymem_cli.pipeline.m2v import StoryMemM2VPipeline
            from storymem_cli.pipeline.scheduler import make_scheduler

            if self.lora_files is not None:  # unfused: every LoRA of the pair is fused once, below
                self.lora_report = _lora_api().load_storymem_lora(high, low, *self.lora_files, fuse=False)
            pipe = StoryMemM2VPipeline(
                **self.shared,
                scheduler=make_scheduler(self.scheduler_config, self.preset.m2v.flow_shift),
                transformer=high,
                transformer_2=low,
                boundary_ratio=self.preset.m2v.boundary_ratio,
            )
        for index, (path, strength, experts, pair) in enumerate(self.runtime.style_loras):
            if pair in ("both", kind):
                report = _lora_api().load_style_lora(pipe, path, strength, experts=experts)
                self.style_reports[index] = {**self.style_reports.get(index, {}), kind: report}
        if self.runtime.fuse_lora:  # once, after every LoRA is on: a merge per LoRA would round each time
            for transformer in (high, low):
                _lora_api().fuse_active_adapters(transformer)
        if kind == "m2v" and self.lora_report is not None:
            self.lora_report["fused"] = self.runtime.fuse_lora
        self._apply_runtime(pipe, (high, low))
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _apply_runtime(self, pipe: Any, transformers: tuple[Any, Any]) -> None:
        from storymem_cli.models.parallel import enable_context_parallel
        from storymem_cli.models.speed import (
            apply_speed_options,
            fp8_method,
            resolve_attention_backend,
        )

        if self.attention_backend is None:  # "auto" probes the device once per process
            self.attention_backend = resolve_attention_backend(self.runtime.attention_backend, self.device, self.dtype)
        if self.runtime.quantize == "fp8" and self.quantize_method is None:
            self.quantize_method = fp8_method(self.device, self.runtime.offload, self.dtype)
        backend = self.attention_backend
        for transformer in transformers:
            if self.quantize_method == "torchao":  # quantised where it computes: seconds there, minutes on the CPU
                transformer.to(self.device)
            apply_speed_options(transformer, self.runtime, self.dtype, self.quantize_method or "layerwise")
            self.stats.attach(transformer, cached=transformer.is_cache_enabled)
            if backend:
                try:
                    transformer.set_attention_backend(backend)
                except (ValueError, RuntimeError, ImportError) as err:
                    raise InvalidInputError(f"attention backend {backend!r} cannot be used: {err}") from None
            enable_context_parallel(transformer)  # a no-op unless torchrun started several processes
        if self.runtime.offload == "model":
            pipe.enable_model_cpu_offload(device=self.device)
        elif self.runtime.offload == "group":
            from storymem_cli.models.offload import enable_group_offload

            self.offload_streams = enable_group_offload(pipe, self.device, sorted(self._group_offloaded))
            self._group_offloaded.update(("text_encoder", "vae"))
        else:
            pipe.to(self.device)

    # -- the contract ----------------------------------------------------------------------------------

    def sampling_for(self, request: ShotRequest) -> SamplingConfig:
        """The preset's T2V or M2V sampling with the request's overrides."""
        base = self.preset.t2v if request.mode == "t2v" else self.preset.m2v
        overrides = {
            "steps": request.steps,
            "guidance_high": request.guidance_high,
            "guidance_low": request.guidance_low,
            "flow_shift": request.flow_shift,
            "boundary_ratio": request.boundary_ratio,
            "scheduler": request.scheduler,
        }
        return base.model_copy(update={k: v for k, v in overrides.items() if v is not None})

    def generate(self, request: ShotRequest, progress: Progress | None = None, decode: bool = True) -> np.ndarray | None:
        """uint8 (F, H, W, 3): all ``request.frames`` frames of the shot, untrimmed; None with ``decode=False``
        (the other ranks of a context-parallel render: rank 0 decodes)."""
        self._check_mode(request)
        self._warn_if_truncated(request.prompt)
        sampling = self.sampling_for(request)
        generator = torch.Generator("cpu").manual_seed(request.seed)
        negative = WAN_DEFAULT_NEGATIVE_PROMPT if request.negative_prompt is None else request.negative_prompt

        def on_step(called: Any, i: int, _t: Any, _kwargs: dict) -> dict:
            if i + 1 == sampling.steps:  # before the pipeline's cleanup resets the step caches
                self.stats.end_denoising()
                if self.magcache is not None:
                    self.magcache.after_shot(kind, experts)
            if self.runtime.cache in ("first-block", "taylorseer"):
                self._step_cache_after(called, i, sampling)
            if progress is not None:
                progress(i + 1, sampling.steps)
            return {}

        from storymem_cli.models.speed import reset_step_cache
        from storymem_cli.pipeline.scheduler import make_scheduler

        kind: Kind = "t2v" if request.mode == "t2v" else "m2v"
        pipe = self.pipeline(kind)
        self.sampling_used[kind] = sampling.model_dump(include={"scheduler", "flow_shift", "steps"})
        pipe.scheduler = make_scheduler(
            self.scheduler_config, sampling.flow_shift, sampling.release_sigmas, sampling.scheduler
        )
        experts = (pipe.transformer, pipe.transformer_2)
        for transformer in experts:
            reset_step_cache(transformer)
        if self.runtime.cache == "taylorseer":
            self._check_taylorseer_fits(pipe, request, sampling)
        if self.magcache is not None:
            self.magcache.before_shot(kind, experts, sampling)
        self.stats.start_shot(self.device)
        negative_embeds = self._negative_embeds(pipe, negative)
        from storymem_cli.models.parallel_cfg import set_negative

        set_negative(experts, negative_embeds)  # --parallel cfg: what the unconditional half computes with
        common = {
            "prompt": request.prompt,
            "negative_prompt_embeds": negative_embeds,
            "height": request.height,
            "width": request.width,
            "num_frames": request.frames,
            "num_inference_steps": sampling.steps,
            "guidance_scale": sampling.guidance_high,
            "guidance_scale_2": sampling.guidance_low,
            "generator": generator,
            "output_type": "np" if decode else "latent",
            "callback_on_step_end": on_step,
        }
        if request.mode == "t2v":
            pipe.register_to_config(boundary_ratio=sampling.boundary_ratio)
            video = pipe(**common).frames[0]
        else:
            video = pipe(
                **common,
                memory_images=request.memory,
                first_frames=request.first_frames,
                boundary_ratio=sampling.boundary_ratio,
                sigmas=base_sigmas(sampling.steps, sampling.release_sigmas, scheduler=sampling.scheduler),
                rope=request.rope,
            ).frames[0]
            self.last_rope = request.rope
        return to_uint8(video) if decode else None

    def _check_taylorseer_fits(self, pipe: Any, request: ShotRequest, sampling: SamplingConfig) -> None:
        """Refuse the shot before its first step when an expert's TaylorSeer cache cannot fit the GPU."""
        from storymem_cli.models.step_cache import check_taylorseer_fits
        from storymem_cli.pipeline.layout import latent_frame_count

        frames = latent_frame_count(request.frames) + (0 if request.mode == "t2v" else len(request.memory))
        _, p_h, p_w = pipe.transformer.config.patch_size
        stride = pipe.vae_scale_factor_spatial
        tokens = frames * (request.height // stride // p_h) * (request.width // stride // p_w)
        for transformer, guidance in ((pipe.transformer, sampling.guidance_high), (pipe.transformer_2, sampling.guidance_low)):
            check_taylorseer_fits(transformer, tokens, 2 if guidance > 1 else 1, self.device)

    def _step_cache_after(self, pipe: Any, step: int, sampling: SamplingConfig) -> None:
        """After each step: free the cache of an expert that is done with this shot; after the first,
        say where TaylorSeer's warm-up takes all of an expert's steps."""
        from storymem_cli.models.step_cache import TAYLORSEER_WARMUP, free_finished_experts, steps_without_prediction

        free_finished_experts(pipe, step, sampling.boundary_ratio)
        if step == 0 and self.runtime.cache == "taylorseer":
            for expert, steps in steps_without_prediction(pipe.scheduler.timesteps, sampling.boundary_ratio).items():
                note = (f"--cache taylorseer: the {expert}-noise expert runs {steps} step(s) of this shot, no more than "
                        f"the cache's {TAYLORSEER_WARMUP} warm-up steps, so it computes every one (no saving there)")  # fmt: skip
                if note not in self._cache_notes:  # once per process, not once per shot
                    self._cache_notes.add(note)
                    warnings.warn(note, stacklevel=2)

    def shot_stats(self) -> dict[str, Any]:
        """The last shot's denoising seconds, expert forwards and forwards a step cache skipped."""
        return self.stats.result()

    def _negative_embeds(self, pipe: Any, text: str) -> torch.Tensor:
        """The negative prompt (Wan's long default for every shot), encoded once: the text encoder is
        the same for both pipelines, and encoding it alone is what the pipelines do inside."""
        device = pipe._execution_device
        key = (text, str(device))
        if key not in self._negatives:
            with torch.no_grad():  # outside the pipeline's own no_grad: no graph kept alive with the cache
                self._negatives[key] = pipe.encode_prompt(
                    prompt=text, do_classifier_free_guidance=False, max_sequence_length=TEXT_ENCODER_MAX_TOKENS,
                    device=device,
                )[0]  # fmt: skip
        return self._negatives[key]

    def _warn_if_truncated(self, prompt: str) -> None:
        tokens = len(self.shared["tokenizer"](prompt).input_ids)
        if tokens > TEXT_ENCODER_MAX_TOKENS:
            warnings.warn(
                f"prompt is {tokens} tokens; the text encoder reads the first {TEXT_ENCODER_MAX_TOKENS} "
                f"and ignores the rest: {prompt[:60]!r}...",
                stacklevel=3,
            )

    def _check_mode(self, request: ShotRequest) -> None:
        if self.lora_files is None or request.mode in ("t2v", "m2v"):
            return
        variant = "mm2v" if self.runtime.continuation == "mm2v" else "mi2v"
        if request.mode != variant:
            raise InvalidInputError(
                f"shot mode {request.mode!r} needs the {request.mode.upper()} StoryMem LoRA, "
                f"but this model was loaded with continuation={self.runtime.continuation!r}",
                hint=f"load the model with continuation={request.mode!r}",
            )

    @staticmethod
    def _sha(path: Path) -> str:
        from storymem_cli.models.lora_files import file_sha256

        return file_sha256(path)  # the loader's cache too: each LoRA file (~2.3 GB at A14B) is hashed once

    def _describe_attention_pick(self) -> dict[str, Any]:
        """--attention auto: the kernels measured on this device and why the one used won."""
        from storymem_cli.models.attention_pick import picked

        pick = picked(self.device, self.dtype) if self.runtime.attention_backend == "auto" else None
        return {"attention_pick": pick.as_dict()} if pick is not None else {}

    def _describe_cache(self) -> dict[str, Any] | None:
        if self.magcache is not None:
            return self.magcache.describe()
        if self.runtime.cache == "none":
            return None
        return self.runtime.model_dump(include={"cache", "cache_threshold", "cache_interval"})

    def describe(self) -> dict[str, Any]:
        """What run.json records about the model: sources, LoRA files and hashes, precision, device."""
        lora = self.lora_report  # the loader's report once the M2V experts are loaded
        if lora is not None:
            lora = {**lora, "loaded": True}
        elif self.lora_files is not None:  # named, not loaded yet: no M2V shot so far
            lora = {"files": {"transformer": str(self.lora_files[0]), "transformer_2": str(self.lora_files[1])},
                    "sha256": {"transformer": self._sha(self.lora_files[0]),
                               "transformer_2": self._sha(self.lora_files[1])},
                    "loaded": False}  # fmt: skip
        return {
            "preset": self.preset.name,
            "random_weights": self.preset.builtin and self.preset.name == TINY.name,
            "i2v": {"repo": self.repos["i2v"], "path": str(self.folders["i2v"])},
            "t2v": {"repo": self.repos["t2v"], "path": str(self.folders["t2v"])},
            "storymem_lora": lora,
            "continuation": self.runtime.continuation,
            "style_loras": [
                {"path": str(p), "sha256": self._sha(Path(p)), "strength": s, "expert": e, "pair": pair,
                 "fused": self.runtime.fuse_lora, "loaded": self.style_reports.get(i, {})}
                for i, (p, s, e, pair) in enumerate(self.runtime.style_loras)
            ],  # fmt: skip
            "dtype": str(self.dtype).removeprefix("torch."),
            "vae_dtype": "float32",
            "device": str(self.device),
            "offload": self.runtime.offload,
            **({"offload_streams": self.offload_streams.as_dict()} if self.offload_streams is not None else {}),
            # Pairs held now and loaded so far (by this process: a batch's stories share the model):
            # both held means a switch between T2V and M2V shots loads nothing (models/residency.py).
            "expert_pairs": {"held": sorted(self._pipes), "loads": self.pair_loads},
            "vae_tiling": self.runtime.vae_tiling,
            "attention_backend": self.attention_backend or self.runtime.attention_backend,
            "attention_backend_requested": self.runtime.attention_backend,
            **self._describe_attention_pick(),
            "cache": self._describe_cache(),
            "compile": self.runtime.compile,
            "quantize": self.runtime.quantize,
            "quantize_method": self.quantize_method,  # fp8: torchao (fp8 matmuls) or layerwise (fp8 storage)
            "rope": self.last_rope.model_dump(),
            "sampling": self.sampling_used,
            "versions": software_versions(),
        }


SOFTWARE = ("torch", "diffusers", "transformers", "peft", "accelerate", "safetensors", "numpy")  # what decides the pixels


def installed_versions(*names: str) -> dict[str, str | None]:
    """Each distribution's installed version (None: not installed), read without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def software_versions() -> dict[str, str | None]:
    """Installed versions of the libraries a result depends on, for a user reporting it (None: not installed)."""
    return dict(_software_versions())


# Read once per process: the libraries already imported are the ones running, and describe() runs after
# every shot (each lookup scans site-packages).
@functools.cache
def _software_versions() -> dict[str, str | None]:
    import platform

    from storymem_cli import __version__

    found = {"python": platform.python_version(), "storymem": __version__, **installed_versions(*SOFTWARE)}
    if torch.cuda.is_available():  # torch is imported here anyway; the CUDA build matters on a GPU
        found["cuda"] = torch.version.cuda
    return found
