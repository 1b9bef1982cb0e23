"""What is trained: the pipeline whose encoders build the samples, and the modules that learn.

LoRA mode loads a model through the registry (``--model tiny``, a model folder, ``wan2.2-a14b``) as
the M2V pipeline inference uses, without any StoryMem LoRA, and adds a trainable one to both experts.
Scratch mode builds a small model (train/scratch.py) into the same pipeline class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from storymem_cli.config import M2V_SAMPLING, VideoConfig
from storymem_cli.errors import InvalidInputError
from storymem_cli.train.config import TrainConfig

LORA_DIR = "lora"  # OUT/lora/<variant folder>/backbone_{high,low}_noise.safetensors: `--lora OUT/lora`
MODEL_DIR = "model"  # OUT/model: `--model OUT/model`
VAE_DIR = "vae"  # OUT/vae (stage vae): `--vae OUT/vae` for the transformer stage


@dataclass
class Trainee:
    pipe: Any  # StoryMemM2VPipeline: tokenizer, text encoder, VAE, encode_memory / prepare_condition
    routes: dict[str, torch.nn.Module]  # lora: "high"/"low" experts; scratch: "m2v"/"t2v" models
    trainable: dict[str, torch.nn.Module]  # checkpointed modules (their requires_grad parameters)
    video: VideoConfig  # training geometry
    boundary: float  # expert switch (sigma)
    shift: float  # flow shift of the shifted timestep sampling
    device: torch.device
    autocast_dtype: torch.dtype | None
    text_frozen: bool
    export: Callable[[Path, Callable[[int], list[torch.Tensor]]], dict[str, str]]  # (out, n -> pixel videos)
    extra: dict[str, Any] = field(default_factory=dict)

    def parameters(self) -> list[torch.nn.Parameter]:
        seen, out = set(), []
        for module in self.trainable.values():
            for p in module.parameters():
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
        return out

    def state(self) -> dict[str, torch.Tensor]:
        return {f"{name}.{k}": p for name, m in self.trainable.items() for k, p in m.named_parameters() if p.requires_grad}

    def load_state(self, weights: dict[str, torch.Tensor]) -> None:
        own = self.state()
        if set(own) != set(weights):
            extra, missing = sorted(set(weights) - set(own))[:3], sorted(set(own) - set(weights))[:3]
            raise InvalidInputError(f"checkpoint weights do not fit this model (unexpected {extra}, missing {missing})")
        with torch.no_grad():
            for key, p in own.items():
                p.copy_(weights[key])


def resolve_device(name: str | None) -> torch.device:
    from storymem_cli.models.runtime import default_device

    return torch.device(name or default_device())


def _geometry(cfg: TrainConfig, video: VideoConfig) -> VideoConfig:
    return video.model_copy(update={k: v for k, v in (("width", cfg.width), ("height", cfg.height),
                                                       ("frames", cfg.frames)) if v is not None})  # fmt: skip


def build_trainee(cfg: TrainConfig) -> Trainee:
    return _build_lora(cfg) if cfg.mode == "lora" else _build_scratch(cfg)


def _build_lora(cfg: TrainConfig) -> Trainee:
    from storymem_cli.models.lora import save_storymem_lora
    from storymem_cli.models.lora_files import EXPERT_FILE_STEMS, STORYMEM_VARIANT_DIRS
    from storymem_cli.models.registry import load_story_model, resolve_preset
    from storymem_cli.models.runtime import RuntimeOptions
    from storymem_cli.train.lora_train import add_trainable_lora

    preset = resolve_preset(cfg.model).model_copy(update={"lora_source": None})  # the base model, no StoryMem LoRA
    story = load_story_model(preset, RuntimeOptions(device=cfg.device, dtype=cfg.dtype))
    pipe = story.pipeline("m2v")
    if pipe.transformer_2 is None:
        raise InvalidInputError(f"model {cfg.model!r} has one transformer; StoryMem LoRAs are made for Wan2.2's two experts")
    high, low = pipe.transformer, pipe.transformer_2
    for i, (name, expert) in enumerate((("high", high), ("low", low))):
        params = add_trainable_lora(expert, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, cfg.seed + i)
        if cfg.experts not in ("both", name):
            for p in params:
                p.requires_grad_(False)  # exported with B = 0: leaves that expert unchanged
            expert.to("cpu")  # never run: at A14B size its 28.6 GB are better spent on activations
        if cfg.gradient_checkpointing:
            expert.enable_gradient_checkpointing()
        expert.train()
    routes = {"high": high, "low": low}
    trainable = {"transformer": high, "transformer_2": low}

    def export(out: Path, _videos: Any) -> dict[str, str]:
        folder = out / LORA_DIR / STORYMEM_VARIANT_DIRS[cfg.continuation]
        paths = {}
        for role, module in trainable.items():
            path = folder / f"{EXPERT_FILE_STEMS[role]}.safetensors"
            tmp = path.with_name(f".tmp-{path.name}")
            save_storymem_lora(module, tmp)
            tmp.replace(path)
            paths[role] = str(path)
        return paths

    device = story.device
    autocast = story.dtype if device.type == "cuda" and story.dtype != torch.float32 else None
    return Trainee(
        pipe=pipe, routes=routes, trainable={k: v for k, v in trainable.items() if k in _trained_roles(cfg)},
        video=_geometry(cfg, preset.video), boundary=preset.m2v.boundary_ratio,
        shift=cfg.timestep_shift or preset.m2v.flow_shift, device=device, autocast_dtype=autocast,
        text_frozen=True, export=export,
    )  # fmt: skip


def _trained_roles(cfg: TrainConfig) -> set[str]:
    return {"both": {"transformer", "transformer_2"}, "high": {"transformer"}, "low": {"transformer_2"}}[cfg.experts]


def _load_vae(path: str) -> Any:
    from diffusers import AutoencoderKLWan

    folder = Path(path).expanduser()
    for candidate in (folder, folder / "vae", folder / "i2v" / "vae"):
        if (candidate / "config.json").is_file():
            return AutoencoderKLWan.from_pretrained(candidate, torch_dtype=torch.float32)
    raise InvalidInputError(f"--vae {path}: no VAE here (looked for config.json in ., vae/ and i2v/vae/)")


def _load_init(parts: dict[str, Any], path: str, with_vae: bool, m2v_from_t2v: bool = False) -> None:
    """Fill the freshly built components with the weights of a from-scratch model folder; with
    ``m2v_from_t2v`` the memory model gets the folder's first-shot model (see `widen_input`)."""
    from diffusers import WanTransformer3DModel
    from transformers import UMT5EncoderModel
    from transformers.utils import logging as hf_logging

    from storymem_cli.models.registry import resolve_preset
    from storymem_cli.models.safe_load import refusal
    from storymem_cli.models.tiny import MODEL_FILE

    hf_logging.disable_progress_bar()  # "Loading weights" bars would interleave with our progress
    folder = Path(path).expanduser()
    if not (folder / MODEL_FILE).is_file():
        raise InvalidInputError(f"--init {path}: not a model folder (no {MODEL_FILE})",
                                hint="pass OUT/model of an earlier `storymem train --from-scratch` run")  # fmt: skip
    preset = resolve_preset(str(folder))  # the record's sources, resolved against the folder as `--model` does
    i2v, t2v = preset.i2v_source, preset.t2v_source
    try:
        first_shot = WanTransformer3DModel.from_pretrained(t2v, subfolder="transformer").state_dict()
        states = {  # checked in this order: a size mismatch names the memory model first
            "i2v": widen_input(first_shot, parts["i2v"].config.in_channels) if m2v_from_t2v
            else WanTransformer3DModel.from_pretrained(i2v, subfolder="transformer").state_dict(),
            "t2v": first_shot,
            "text_encoder": UMT5EncoderModel.from_pretrained(i2v, subfolder="text_encoder").state_dict(),
        }
    except (OSError, ValueError, RuntimeError) as err:  # diffusers wraps torch's refusal of a pickle
        refused = refusal(err, f"a weight file of --init {path}")
        if refused is None:
            raise
        raise refused from None
    for name, state in states.items():
        try:
            parts[name].load_state_dict(state)
        except RuntimeError as err:  # shapes differ: another model size
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            detail = next((line for line in lines if "size mismatch" in line), lines[0])
            raise InvalidInputError(f"--init {path}: its {name} does not fit the size given by --model ({detail})",
                                    hint="pass the --model size the earlier run was trained with") from None  # fmt: skip
    if with_vae:
        parts["vae"] = _load_vae(str(folder))


def widen_input(state: dict[str, torch.Tensor], in_channels: int) -> dict[str, torch.Tensor]:
    """A first-shot (T2V) transformer's weights for a memory (M2V) transformer with ``in_channels``
    inputs: the patch embedding keeps its weights for the noisy latent's channels, which come first
    in the M2V input (``[latents | mask | condition]``), and zeros for the rest: whatever the mask
    and condition hold, the widened model starts out computing what the T2V model computes on the
    latents."""
    key = "patch_embedding.weight"
    weight = state[key]
    wide = weight.new_zeros((weight.shape[0], in_channels, *weight.shape[2:]))
    wide[:, : weight.shape[1]] = weight
    return {**state, key: wide}


def _build_scratch(cfg: TrainConfig) -> Trainee:
    from storymem_cli.pipeline.m2v import StoryMemM2VPipeline
    from storymem_cli.train.scratch import (
        build_scratch_components,
        export_model_dir,
        scratch_preset,
        scratch_size,
    )

    size = scratch_size(cfg.model)
    parts = build_scratch_components(size, cfg.seed)
    if cfg.init is not None:  # a resumed run loads its checkpoint over these, as over random weights
        _load_init(parts, cfg.init, with_vae=cfg.vae is None, m2v_from_t2v=cfg.m2v_from_t2v)
    if cfg.vae is not None:
        parts["vae"] = _load_vae(cfg.vae)
    device = resolve_device(cfg.device)
    pipe = StoryMemM2VPipeline(
        tokenizer=parts["tokenizer"], text_encoder=parts["text_encoder"], vae=parts["vae"],
        scheduler=parts["scheduler"], transformer=parts["i2v"], transformer_2=parts["i2v"],
        boundary_ratio=M2V_SAMPLING.boundary_ratio,
    ).to(device)  # fmt: skip
    parts["t2v"].to(device)
    pipe.set_progress_bar_config(disable=True)
    name = cfg.model if cfg.model == "toy" else f"{Path(cfg.model).stem}-scratch"  # not the random tiny preset
    preset = scratch_preset(name, size)
    video = _geometry(cfg, size.video)
    dtype = torch.bfloat16 if cfg.dtype == "auto" else getattr(torch, cfg.dtype)  # autocast dtype on CUDA
    autocast = dtype if device.type == "cuda" and dtype != torch.float32 else None
    if cfg.stage == "vae":
        return _vae_stage(cfg, pipe, video, device)
    parts["vae"].requires_grad_(False).eval()
    trainable: dict[str, torch.nn.Module] = {"i2v": parts["i2v"]}
    if cfg.t2v_share > 0:
        trainable["t2v"] = parts["t2v"]
    parts["text_encoder"].requires_grad_(cfg.train_text_encoder)
    if cfg.train_text_encoder:
        trainable["text_encoder"] = parts["text_encoder"].train()
    else:
        parts["text_encoder"].eval()
    for name in ("i2v", "t2v"):
        parts[name].train()
        if cfg.gradient_checkpointing:
            parts[name].enable_gradient_checkpointing()

    def export(out: Path, _videos: Any) -> dict[str, str]:
        return {"model": str(export_model_dir(out / MODEL_DIR, parts, preset))}

    return Trainee(
        pipe=pipe, routes={"m2v": parts["i2v"], "t2v": parts["t2v"]}, trainable=trainable,
        video=video, boundary=M2V_SAMPLING.boundary_ratio,
        shift=cfg.timestep_shift or M2V_SAMPLING.flow_shift, device=device, autocast_dtype=autocast,
        text_frozen=not cfg.train_text_encoder, export=export,
    )  # fmt: skip


def _vae_stage(cfg: TrainConfig, pipe: Any, video: VideoConfig, device: torch.device) -> Trainee:
    """Only the VAE learns; the export is ``OUT/vae`` for ``--vae`` of the transformer stage."""
    from storymem_cli.train.vae import STATS_VIDEOS, export_vae, inflate_temporal, init_posterior, latent_stats

    vae = pipe.vae.requires_grad_(True).train()
    if cfg.vae is None:  # random init (a resumed run loads its checkpoint over this)
        init_posterior(vae)
    if cfg.vae_inflate:  # before a resumed run's checkpoint is loaded over it: the same start either way
        inflate_temporal(vae)
    if cfg.vae_decoder_only:  # the encoder defines the latents a transformer was trained on: keep it
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
    if cfg.gradient_checkpointing:
        vae.enable_gradient_checkpointing()

    def export(out: Path, videos: Callable[[int], list[torch.Tensor]]) -> dict[str, str]:
        vae.eval()
        stats = latent_stats(vae, [v.to(device) for v in videos(STATS_VIDEOS)])
        vae.train()
        return {"vae": str(export_vae(out / VAE_DIR, vae, stats))}

    return Trainee(
        pipe=pipe, routes={}, trainable={"vae": vae}, video=video, boundary=M2V_SAMPLING.boundary_ratio,
        shift=1.0, device=device, autocast_dtype=None, text_frozen=True, export=export,
    )  # fmt: skip
