"""storymem render: a story script in, one MP4 out (resumable; several scripts = a batch)."""

from __future__ import annotations

import json
import re
import sys
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from storymem_cli.cli.app import app
from storymem_cli.errors import InvalidInputError
from storymem_cli.models.presets import A14B, PRESETS, TOY  # torch-free
from storymem_cli.render.settings import MAX_UPSCALE  # torch-free


class Continuation(str, Enum):
    mi2v = "mi2v"
    mm2v = "mm2v"
    none = "none"


class Offload(str, Enum):
    none = "none"
    model = "model"
    group = "group"


class Dtype(str, Enum):
    auto = "auto"
    bfloat16 = "bfloat16"
    float16 = "float16"
    float32 = "float32"


class Rope(str, Enum):
    negative = "negative"
    sequential = "sequential"


class Keyframes(str, Enum):
    semantic = "semantic"
    release = "release"
    first_frame = "first-frame"


class Aesthetic(str, Enum):
    hpsv3 = "hpsv3"
    laion = "laion"
    none = "none"


_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_size(text: str | None) -> tuple[int | None, int | None]:
    if text is None:
        return None, None
    match = _SIZE.match(text)
    if not match:
        raise InvalidInputError(f"--size {text!r} is not WIDTHxHEIGHT", hint="e.g. --size 832x480")
    return int(match.group(1)), int(match.group(2))


def parse_style_lora(text: str) -> tuple[str, float]:
    """``PATH[:STRENGTH]``; a colon that is not followed by a number belongs to the path."""
    path, sep, strength = text.rpartition(":")
    if sep:
        try:
            return path, float(strength)
        except ValueError:
            pass
    return text, 1.0


def _echo_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))


def _echo_plan(plan: dict[str, Any]) -> None:
    typer.echo(f"{plan['story']}  ->  {plan['run_dir']}  (model {plan['model']})")
    for shot in plan["shots"]:
        typer.echo(
            f"  shot {shot['shot']:>3}  scene {shot['scene']:>2}.{shot['shot_in_scene']:<2} {shot['mode']:<4} "
            f"seed {shot['seed']:<10} {shot['frames']:>3} frames  {shot['action']:<6} {shot['prompt'][:60]}"
        )


@app.command()
def render(
    scripts: list[Path] = typer.Argument(
        ..., metavar="SCRIPT", help="Story script(s) (JSON/JSON5). Several scripts render one after another, each into its own folder."
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Run folder for one script (default: runs/ and the script's file name without .json); for several "
        "scripts or with --shard, the folder that gets one run folder per script (default runs/).",
    ),
    model: str = typer.Option(
        "auto",
        metavar="NAME|FOLDER",
        help=f"auto ({A14B.name} on a CUDA machine, else the built-in CPU model '{TOY.name}'), "
        f"{', '.join(PRESETS)}, or a local model folder.",
    ),
    size: str | None = typer.Option(None, metavar="WxH", help="WIDTHxHEIGHT, e.g. 832x480 (default: the model's)."),
    frames: int | None = typer.Option(None, min=1, help="Frames per shot before trimming, 4k+1 (default: the model's)."),
    steps: int | None = typer.Option(None, min=1, help="Denoising steps per shot (default: the model's)."),
    seed: int | None = typer.Option(
        None, min=0, help="Base seed; shot i gets seed+i (0-based across scenes) unless the script sets one. Default 0."
    ),
    lora: Path | None = typer.Option(None, help="StoryMem LoRA file or folder (default: the model's)."),
    style_lora: list[str] = typer.Option(
        [], "--style-lora", metavar="PATH[:STRENGTH]", help="Extra style LoRA as PATH[:STRENGTH]; repeat for several."
    ),
    rope: Rope | None = typer.Option(
        None, help="Temporal positions of memory: negative (paper) or sequential (authors' release)."
    ),
    rope_shift: float | None = typer.Option(None, help="Spacing S of the negative memory positions (paper: 5)."),
    memory_size: int | None = typer.Option(None, min=1, help="Memory bank capacity (paper: 10)."),
    sink_size: int | None = typer.Option(None, min=0, help="Earliest keyframes never evicted (paper: 3)."),
    keyframes_per_shot: int | None = typer.Option(None, min=1, help="Most keyframes taken from one shot (paper: 3)."),
    keyframes: Keyframes | None = typer.Option(
        None,
        help="Keyframe selection: semantic (paper: novel frames by embedding similarity, deduplicated against "
        "memory, from the shot's own frames), release (the same exactly as the authors' code: untrimmed output, "
        "scan from frame 2) or first-frame (ablation: each shot's first usable frame).",
    ),
    aesthetic: Aesthetic | None = typer.Option(None, help="Keyframe quality filter: hpsv3 (paper), laion or none."),
    no_memory: bool = typer.Option(False, "--no-memory", help="Ablation: every shot without memory (cuts are T2V)."),
    offload: Offload = typer.Option(
        Offload.none,
        help="GPU memory: none (all on the GPU; A14B needs ~70 GiB), model (one component on the GPU at a time), "
        "group (block by block: least memory, slowest).",
    ),
    device: str | None = typer.Option(None, metavar="DEVICE", help="torch device, e.g. cuda, cuda:1, cpu (default: cuda if present)."),
    dtype: Dtype = typer.Option(
        Dtype.auto, help="Transformer precision; auto: the model's on a GPU (bf16 for A14B), float32 on the CPU."
    ),
    vae_tiling: bool = typer.Option(False, "--vae-tiling", help="Decode in tiles: less GPU memory at large sizes."),
    attention: str | None = typer.Option(
        None, metavar="BACKEND", help="diffusers attention backend, e.g. flash, _native_cudnn, sage (default: PyTorch SDPA)."
    ),
    continuation: Continuation = typer.Option(
        Continuation.mi2v,
        help="How a shot with cut:false continues the previous one: mi2v (its last frame, paper), "
        "mm2v (its last 5 frames) or none (treat as a cut).",
    ),
    upscale: int = typer.Option(
        1,
        min=1,
        max=MAX_UPSCALE,
        help="Write shots/*.mp4 and story.mp4 N times larger (nearest neighbour), e.g. to watch 64x64 clips; "
        "memory and the model's frames stay at the model's size.",
    ),
    restart: bool = typer.Option(False, "--restart", help="Discard this story's earlier render in the folder."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (mode, seed, frames per shot); load no model."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    shard: str | None = typer.Option(
        None, metavar="K/N", help="K/N: render only the K-th of N deterministic shares of the scripts (K from 1)."
    ),
) -> None:
    """Render story scripts into videos, shot by shot, with a memory of earlier shots.

    Each story goes into a run folder: story.mp4, shots/shot_NNN.mp4, the memory
    bank (memory/, memory.json) and run.json (settings, seeds, modes, memory used
    per shot, timings). Running the same command again resumes after the last
    finished shot; after editing the script it re-renders from the first changed
    shot and keeps the shots before it. A failing story in a batch does not stop
    the others; the exit code is non-zero if any failed.
    """
    from storymem_cli.render.batch import batch_exit_code, plan_jobs, run_jobs
    from storymem_cli.render.preflight import preflight
    from storymem_cli.render.progress import make_progress
    from storymem_cli.render.session import RenderSession
    from storymem_cli.render.settings import RenderOptions, StyleLora
    from storymem_cli.render.shard import parse_shard, take_shard

    width, height = parse_size(size)
    options = RenderOptions(
        model=model,
        width=width,
        height=height,
        frames=frames,
        steps=steps,
        seed=seed,
        continuation=continuation.value,
        rope=rope.value if rope else None,
        rope_shift=rope_shift,
        memory_size=memory_size,
        sink_size=sink_size,
        keyframes_per_shot=keyframes_per_shot,
        keyframes=keyframes.value if keyframes else None,
        aesthetic=aesthetic.value if aesthetic else None,
        use_memory=not no_memory,
        lora=str(lora) if lora else None,
        style_loras=tuple(StyleLora(path=p, strength=s) for p, s in map(parse_style_lora, style_lora)),
        offload=offload.value,
        device=device,
        dtype=dtype.value,
        vae_tiling=vae_tiling,
        attention_backend=attention,
        upscale=upscale,
    )
    batch = len(scripts) > 1 or shard is not None
    if shard is not None:
        scripts = take_shard(scripts, *parse_shard(shard))
        if not scripts:
            typer.echo(f"shard {shard}: no scripts in this share", err=True)
    jobs = plan_jobs(scripts, output, batch=batch) if scripts else []
    jobs, early = preflight(jobs, options, batch=batch, writes=not dry_run)  # before torch is imported

    progress = make_progress(sys.stderr)
    for failure in early:
        progress.note(f"error: {failure.script}: {failure.message}")
    try:
        session = RenderSession(options, progress=progress, restart=restart)
        if not dry_run:
            session.check_device()
            progress.note(f"model: {session.describe_model()}")
        render_one = session.dry_run if dry_run else session.render
        if batch:
            results, failures = run_jobs(
                jobs, render_one, lambda failure: progress.note(f"error: {failure.script}: {failure.message}")
            )
            failures = early + failures
        else:  # one story: its error goes straight to the app's handler (message, hint, exit code)
            results, failures = [render_one(job) for job in jobs], []
    finally:
        progress.close()

    if json_output:
        failed = [failure.as_dict() for failure in failures]
        _echo_json(results[0] if not batch and results else {"stories": results, "failed": failed})
    elif dry_run:
        for plan in results:
            _echo_plan(plan)
    else:
        for result in results:
            typer.echo(result["video"])

    if failures:
        names = ", ".join(str(failure.script) for failure in failures)
        typer.echo(f"error: {len(failures)} of {len(jobs) + len(early)} stories failed: {names}", err=True)
        raise typer.Exit(batch_exit_code(failures))
