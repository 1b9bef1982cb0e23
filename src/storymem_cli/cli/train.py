"""`storymem train`: the paper's training recipe (3.3) as a resumable command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from storymem_cli.cli.app import app
from storymem_cli.cli.fields import choices
from storymem_cli.config import RopeConfig  # torch-free
from storymem_cli.errors import EXIT_INTERRUPTED, InvalidInputError
from storymem_cli.models.presets import PRESETS, TINY, TOY  # torch-free
from storymem_cli.train.config import TrainConfig  # torch-free: pydantic only

# --help groups the options in panels: one table of 45 options squeezes their names at 80 columns.
MODEL, VAE, OPTIMISER, SAMPLES = "Model and output", "VAE stage", "Optimiser and checkpoints", "Samples"

# The choices of each option are those of the field it fills, so --help lists them.
Stage = choices("Stage", TrainConfig, "stage")
Experts = choices("Experts", TrainConfig, "experts")
LrSchedule = choices("LrSchedule", TrainConfig, "lr_schedule")
TimestepSampling = choices("TimestepSampling", TrainConfig, "timestep_sampling")
Continuation = choices("Continuation", TrainConfig, "continuation")
Dtype = choices("Dtype", TrainConfig, "dtype")
RopeMode = choices("RopeMode", RopeConfig, "mode")


def _value(choice):
    return None if choice is None else choice.value


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _config(**fields):
    from pydantic import ValidationError

    from storymem_cli.train.config import TrainConfig

    try:
        return TrainConfig(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as err:
        problems = "; ".join(
            f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" if e["loc"] else e["msg"].removeprefix("Value error, ")
            for e in err.errors()
        )
        raise InvalidInputError(f"invalid training settings: {problems}") from None


class _PlainProgress:
    """One line every ``every`` steps, for logs and pipes."""

    def __init__(self, every: int):
        self.every = every

    def __call__(self, info: dict) -> None:
        if info["step"] % self.every and info["step"] != info["max_steps"]:
            return
        typer.echo(
            f"step {info['step']}/{info['max_steps']}  loss {info['loss']:.4f}  lr {info['lr']:.2e}  "
            f"{info['steps_per_second']:.2f} steps/s  eta {_eta(info['eta_seconds'])}",
            err=True,
        )


@app.command("train")
def train_command(
    dataset: Path = typer.Argument(..., metavar="DATASET", show_default=False, help="Dataset folder with index.json: groups of related clips with captions (docs/toy-world.md, 'Dataset format')."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: train.json, log.jsonl, checkpoints/, and the result (lora/ or model/). Rerun the same command to resume.", rich_help_panel=MODEL),
    model: str = typer.Option(None, "--model", help=f"LoRA: the model to adapt ({', '.join(PRESETS)} or a model folder; default {TINY.name}). With --from-scratch: the model size (toy, tiny, or a JSON size file; default toy).", rich_help_panel=MODEL),
    from_scratch: bool = typer.Option(False, "--from-scratch", help="Train a small model from random weights instead of a LoRA; writes a model folder usable with `--model OUT/model`.", rich_help_panel=MODEL),
    vae: str = typer.Option(None, "--vae", help="With --from-scratch: take the (frozen) VAE from this folder (e.g. OUT/vae of a --stage vae run); otherwise it is random (fine for tests, not for watching).", rich_help_panel=MODEL),
    init: str = typer.Option(None, "--init", help="With --from-scratch: start the transformers and the text encoder from this model folder (OUT/model of an earlier run; its VAE too, unless --vae is given, and its run's latent cache) instead of random weights: more steps under new settings, e.g. clips after single frames.", rich_help_panel=MODEL),
    m2v_from_t2v: bool = typer.Option(False, "--m2v-from-t2v", help="With --init: start the memory (M2V) model from the folder's first-shot (T2V) model instead of its memory model, the input layer widened with zeros for the mask and condition channels, as Wan's I2V extends its T2V. On the toy it then drew better from text but copied less from memory than a memory model carried on: see docs/training.md.", rich_help_panel=MODEL),
    stage: Stage = typer.Option(None, "--stage", help="With --from-scratch: 'vae' trains the autoencoder alone (writes OUT/vae), 'transformer' the diffusion models. [default: transformer]", rich_help_panel=MODEL),
    vae_kl_weight: float = typer.Option(None, "--vae-kl-weight", help="Stage vae: weight of the KL term. [default: 1e-4]", rich_help_panel=VAE),
    vae_decoder_only: bool = typer.Option(
        False, "--vae-decoder-only",
        help="Stage vae with --vae: train only the decoder. The latents stay the same, so it can run beside "
        "(or after) a transformer stage that uses this VAE, and sharpen what that model's videos decode to.", rich_help_panel=VAE,
    ),
    vae_inflate: bool = typer.Option(
        False, "--vae-inflate",
        help="Stage vae with --vae from a --frames 1 stage: start the temporal layers it never trained as per-frame "
        "copies, so whole clips reconstruct as well as single frames from the first step.", rich_help_panel=VAE,
    ),
    vae_chroma_weight: float = typer.Option(
        None, "--vae-chroma-weight",
        help="Stage vae: extra L1 weight on saturated pixels, so small coloured sprites are learned early. [default: 0]", rich_help_panel=VAE,
    ),
    loss_chroma_weight: float = typer.Option(
        None, "--loss-chroma-weight",
        help="Transformer stage: weigh the velocity loss towards latents over saturated pixels (1 + W x chroma), so "
        "small coloured characters count as much as the background. 0 is the paper's plain loss. [default: 0]", rich_help_panel=OPTIMISER,
    ),
    max_steps: int = typer.Option(None, "--max-steps", help="Optimiser steps in total, counting earlier stages of this run. [default: 1000]", rich_help_panel=OPTIMISER),
    time_limit: float = typer.Option(None, "--time-limit", help="Stop cleanly after this many minutes (checkpoint + export); rerun to continue.", rich_help_panel=OPTIMISER),
    batch_size: int = typer.Option(None, "--batch-size", help="Samples per micro-batch. [default: 1]", rich_help_panel=OPTIMISER),
    grad_accum: int = typer.Option(None, "--grad-accum", help="Micro-batches per optimiser step. [default: 1]", rich_help_panel=OPTIMISER),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate. [default: 1e-4 LoRA, 3e-4 from scratch]", rich_help_panel=OPTIMISER),
    warmup_steps: int = typer.Option(None, "--warmup-steps", help="Linear warm-up steps. [default: 50]", rich_help_panel=OPTIMISER),
    lr_schedule: LrSchedule = typer.Option(None, "--lr-schedule", help="constant, or cosine over --schedule-steps. [default: constant]", rich_help_panel=OPTIMISER),
    schedule_steps: int = typer.Option(None, "--schedule-steps", help="Length of the cosine decay, fixed across stages.", rich_help_panel=OPTIMISER),
    seed: int = typer.Option(None, "--seed", help="Seed of the samples, noise and initial weights. [default: 0]", rich_help_panel=OPTIMISER),
    device: str = typer.Option(None, "--device", help="cuda, cuda:1, cpu. [default: cuda when present]", rich_help_panel=MODEL),
    dtype: Dtype = typer.Option(None, "--dtype", metavar="DTYPE", help="auto, bfloat16, float16 or float32: frozen weights / autocast on CUDA; CPU trains in float32. [default: auto]", rich_help_panel=MODEL),
    experts: Experts = typer.Option(None, "--experts", help="LoRA: both (each expert on its own noise range), high or low. [default: both]", rich_help_panel=MODEL),
    lora_rank: int = typer.Option(None, "--lora-rank", help="LoRA rank. [default: 128, the release's]", rich_help_panel=MODEL),
    lora_alpha: float = typer.Option(None, "--lora-alpha", help="LoRA alpha; rsLoRA scale alpha/sqrt(rank). [default: 128]", rich_help_panel=MODEL),
    lora_dropout: float = typer.Option(None, "--lora-dropout", help="[default: 0.05]", rich_help_panel=MODEL),
    memory_min: int = typer.Option(None, "--memory-min", help="Fewest memory frames of a sample with memory. [default: 1]", rich_help_panel=SAMPLES),
    memory_max: int = typer.Option(None, "--memory-max", help="Most memory frames. [default: 10]", rich_help_panel=SAMPLES),
    memory_frame_stride: int = typer.Option(
        None, "--memory-frame-stride", min=1,
        help="Draw memory frames from every k-th frame of the other clips only: neighbouring frames are near "
        "duplicates, and on a CPU each distinct frame costs a VAE encode. [default: 1]", rich_help_panel=SAMPLES,
    ),
    no_memory_share: float = typer.Option(None, "--no-memory-share", help="Share of samples without memory (first shots). [default: 0.1]", rich_help_panel=SAMPLES),
    first_frame_prob: float = typer.Option(None, "--first-frame-prob", help="Probability that a sample knows its first frame(s). [default: 0.5]", rich_help_panel=SAMPLES),
    continuation: Continuation = typer.Option(None, "--continuation", help="mi2v (1 known frame) or mm2v (5). [default: mi2v]", rich_help_panel=SAMPLES),
    caption_dropout: float = typer.Option(None, "--caption-dropout", help="Share of samples captioned with the negative prompt (CFG). [default: 0.1]", rich_help_panel=SAMPLES),
    rope: RopeMode = typer.Option(None, "--rope", help="Memory positions: negative (paper) or sequential (release). [default: negative]", rich_help_panel=SAMPLES),
    rope_shift: float = typer.Option(None, "--rope-shift", help="S of the negative RoPE shift. [default: 5]", rich_help_panel=SAMPLES),
    timestep_sampling: TimestepSampling = typer.Option(None, "--timestep-sampling", help="uniform or shifted (by the flow shift). [default: shifted]", rich_help_panel=SAMPLES),
    timestep_shift: float = typer.Option(None, "--timestep-shift", help="Shift of 'shifted' sampling. [default: the model's M2V flow shift]", rich_help_panel=SAMPLES),
    width: int = typer.Option(None, "--width", help="Training width. [default: the model's]", rich_help_panel=SAMPLES),
    height: int = typer.Option(None, "--height", help="Training height. [default: the model's]", rich_help_panel=SAMPLES),
    frames: int = typer.Option(None, "--frames", help="Frames per target (4k+1), a random window of each clip. [default: the model's]", rich_help_panel=SAMPLES),
    t2v_share: float = typer.Option(None, "--t2v-share", help="From scratch: share of batches training the first-shot (T2V) model; 1 trains it alone (with --init: a first-shot stage after a memory stage). [default: 0.2]", rich_help_panel=SAMPLES),
    train_text_encoder: bool = typer.Option(False, "--train-text-encoder", help="From scratch: train the text encoder too (default: frozen).", rich_help_panel=MODEL),
    gradient_checkpointing: bool = typer.Option(None, "--gradient-checkpointing", help="Recompute activations (large models).", rich_help_panel=OPTIMISER),
    latent_cache_mb: int = typer.Option(None, "--latent-cache-mb", help="Memory for cached VAE latents of clips and frames (the VAE is frozen). [default: 1024]", rich_help_panel=OPTIMISER),
    checkpoint_every: int = typer.Option(None, "--checkpoint-every", help="Steps between checkpoints. [default: 200]", rich_help_panel=OPTIMISER),
    keep_checkpoints: int = typer.Option(None, "--keep-checkpoints", help="Checkpoints kept. [default: 2]", rich_help_panel=OPTIMISER),
    log_every: int = typer.Option(None, "--log-every", help="Steps between progress lines when not on a terminal. [default: 10]", rich_help_panel=OPTIMISER),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON: output, mode, stopped, step, first and last loss, steps per second, checkpoint, exported files.", rich_help_panel=MODEL),
) -> None:
    """Train StoryMem's memory conditioning (paper 3.3): a LoRA on an existing model, or a small model from scratch.

    Each sample is one clip of a group (the target) with 1-10 frames of the group's other clips as memory (some samples have none), and half the time its own first frame (MI2V). Loss: rectified-flow velocity on the target's frames; memory sits at negative RoPE positions (S = 5).

    Checkpoints are atomic; rerunning the same command resumes from the last one (other settings are refused). `--time-limit` stops cleanly for staged runs. The result: `OUT/lora` (render with `--lora OUT/lora`) or `OUT/model` (render with `--model OUT/model`). Details: docs/training.md.
    """
    # 1. Check inputs (before importing torch).
    from storymem_cli.cli.paths import check_output_path

    check_output_path(out, "-o/--out", folder=True)
    mode = "scratch" if from_scratch else "lora"
    rope_fields = {k: v for k, v in (("mode", _value(rope)), ("shift", rope_shift)) if v is not None}
    try:
        rope_config = RopeConfig(**rope_fields) if rope_fields else None
    except ValueError as err:
        raise InvalidInputError(f"invalid --rope/--rope-shift: {err.errors()[0]['msg']}") from None  # type: ignore[attr-defined]
    cfg = _config(
        dataset=dataset, output=out, mode=mode, model=model or (TOY.name if from_scratch else TINY.name), vae=vae, init=init,
        m2v_from_t2v=m2v_from_t2v, stage=_value(stage), vae_kl_weight=vae_kl_weight, vae_chroma_weight=vae_chroma_weight, vae_decoder_only=vae_decoder_only,
        vae_inflate=vae_inflate, loss_chroma_weight=loss_chroma_weight, max_steps=max_steps,
        time_limit_minutes=time_limit, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
        warmup_steps=warmup_steps, lr_schedule=_value(lr_schedule), schedule_steps=schedule_steps, seed=seed, device=device,
        dtype=_value(dtype), experts=_value(experts), lora_rank=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
        memory_min=memory_min, memory_max=memory_max, memory_frame_stride=memory_frame_stride, no_memory_share=no_memory_share,
        first_frame_prob=first_frame_prob, continuation=_value(continuation), caption_dropout=caption_dropout,
        rope=rope_config, timestep_sampling=_value(timestep_sampling), timestep_shift=timestep_shift, width=width,
        height=height, frames=frames, t2v_share=t2v_share, train_text_encoder=train_text_encoder,
        gradient_checkpointing=gradient_checkpointing, latent_cache_mb=latent_cache_mb, checkpoint_every=checkpoint_every,
        keep_checkpoints=keep_checkpoints, log_every=log_every,
    )  # fmt: skip

    # 2. Build (or resume) the run.
    from storymem_cli.models.devices import check_device
    from storymem_cli.train.loop import Trainer

    check_device(cfg.device, what="storymem train")

    trainer = Trainer(cfg)
    if trainer.resumed_from:
        typer.echo(f"resuming from {trainer.resumed_from} (step {trainer.step})", err=True)

    # 3. Train, with a live bar on a terminal and plain lines otherwise. Ctrl-C or
    # SIGTERM: the trainer has saved a checkpoint and the latent cache, so say how to go on.
    try:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            columns = (TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                       TextColumn("{task.fields[rate]} steps/s"), TimeRemainingColumn())  # fmt: skip
            with Progress(*columns, console=Console(stderr=True)) as bar:
                task = bar.add_task("train", total=cfg.max_steps, completed=trainer.step, loss="?", rate="?")

                def show(info: dict) -> None:
                    bar.update(task, completed=info["step"], loss=f"{info['loss']:.4f}",
                               rate=f"{info['steps_per_second']:.2f}")  # fmt: skip

                summary = trainer.run(show)
        else:
            summary = trainer.run(_PlainProgress(cfg.log_every))
    except KeyboardInterrupt:
        typer.echo(f"interrupted at step {trainer.step}: checkpoint saved in {cfg.output / 'checkpoints'}; "
                   "run the same command to resume", err=True)  # fmt: skip
        raise typer.Exit(EXIT_INTERRUPTED) from None

    # 4. Report.
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
        return
    loss = "n/a" if summary["last_loss"] is None else f"{summary['last_loss']:.4f}"
    typer.echo(f"{summary['stopped']}: step {summary['step']}/{cfg.max_steps}, loss {loss}")
    for name, path in summary["exported"].items():
        typer.echo(f"{name}: {path}")
