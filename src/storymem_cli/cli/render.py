"""storymem render: a story script in, one MP4 out (resumable; several scripts = a batch)."""

from __future__ import annotations

import json
import math
import re
import sys
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from storymem_cli.cli.app import ARGV_KEY, app
from storymem_cli.cli.fields import check_field, choices, field_option, from_params
from storymem_cli.errors import EXIT_INTERRUPTED, InvalidInputError, StorymemError
from storymem_cli.models.presets import A14B, PRESETS, TOY  # torch-free
from storymem_cli.models.runtime import RuntimeOptions  # torch-free
from storymem_cli.render.settings import MAX_UPSCALE, RenderOptions  # torch-free
from storymem_cli.render.style_args import STYLE_LORA_METAVAR  # torch-free
from storymem_cli.script.model import SEED_MAX  # torch-free

MIN_SIDE = 16  # VideoConfig's floor: one latent patch of the smallest model
MAX_SIDE = 16384  # H.264's limit (render.video.MAX_SIDE, not imported: it would pull numpy in early)
MAX_STEPS = 1000  # the schedulers have 1000 training timesteps: more steps only repeat them


# The choices of each option are those of the field it fills.
Continuation = choices("Continuation", RenderOptions, "continuation")
Rope = choices("Rope", RenderOptions, "rope")
Keyframes = choices("Keyframes", RenderOptions, "keyframes")
Aesthetic = choices("Aesthetic", RenderOptions, "aesthetic")
Offload = choices("Offload", RuntimeOptions, "offload")
Dtype = choices("Dtype", RuntimeOptions, "dtype")
Cache = choices("Cache", RuntimeOptions, "cache")
Quantize = choices("Quantize", RuntimeOptions, "quantize")
Scheduler = choices("Scheduler", RenderOptions, "scheduler")
Retrieval = choices("Retrieval", RenderOptions, "retrieval")
MagcacheExperts = choices("MagcacheExperts", RuntimeOptions, "magcache_experts")


class Parallel(str, Enum):
    auto = "auto"
    ulysses = "ulysses"
    ring = "ring"
    cfg = "cfg"


_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_size(text: str | None) -> tuple[int | None, int | None]:
    if text is None:
        return None, None
    match = _SIZE.match(text)
    if not match:
        raise InvalidInputError(f"--size {text!r} is not WIDTHxHEIGHT", hint="e.g. --size 832x480")
    width, height = int(match.group(1)), int(match.group(2))
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise InvalidInputError(
            f"--size {text}: width and height must be from {MIN_SIDE} to {MAX_SIDE} pixels", hint="e.g. --size 832x480"
        )
    return width, height


def check_rope_shift(value: float | None) -> None:
    # typer's float ranges let nan through (every comparison with nan is false).
    if value is not None and not (math.isfinite(value) and value > 0):
        raise InvalidInputError(
            f"--rope-shift {value}: must be a positive number (the spacing of memory positions)",
            hint="the paper uses --rope-shift 5",
        )


def check_files(lora: Path | None) -> None:
    """The StoryMem LoRA path exists (a file or a folder of LoRA files) before any model loads; style
    LoRA files are checked in full by the preflight (render/style_args.py)."""
    if lora is not None and not lora.exists():
        raise InvalidInputError(f"--lora {lora}: no such file or folder", hint="check the path")
    if lora is not None and lora.is_file() and not lora.name.startswith("backbone_"):
        raise InvalidInputError(
            f"--lora {lora}: not a StoryMem LoRA file name (backbone_high_noise / backbone_low_noise)",
            hint="pass the folder holding both files, or one of them; a style LoRA goes to --style-lora",
        )


def resume_command(argv: list[str] | None) -> str:
    """The command that resumes an interrupted render: the same one, without --restart (which would
    discard the shots just kept)."""
    import shlex

    if argv is None:
        return "the same command again (without --restart)"
    return shlex.join(["storymem", *(arg for arg in argv if arg != "--restart")])


def interrupted_message(job: Any, argv: list[str] | None) -> str:
    """What Ctrl-C left: the story's finished shots (kept, as run.json lists them) and how to go on."""
    from storymem_cli.render.runfolder import RunFolder

    try:
        record = RunFolder(job.run_dir).read_record()
    except StorymemError:
        record = None
    done = sum(1 for shot in (record or {}).get("shots", []) if shot.get("status") == "done")
    planned = len((record or {}).get("planned_shots") or [])
    story = (record or {}).get("story_name", str(job.script))
    kept = f"{done} of {planned} shots" if planned else f"{done} shots"
    return (
        f"interrupted: {story}: {kept} finished and kept in {job.run_dir} (the shot in progress is lost)\n"
        f"  resume with: {resume_command(argv)}"
    )


SMALL_SIDE = 128  # clips smaller than this a side are hard to watch at their own size (toy: 32x32)
WATCH_SIDE = 256  # what --upscale is suggested to reach


def small_video_note(width: int, height: int) -> str | None:
    """Say so when the clips came out too small to watch, and the --upscale that fixes it."""
    if max(width, height) >= SMALL_SIDE:
        return None
    factor = min(MAX_UPSCALE, math.ceil(WATCH_SIDE / max(width, height)))
    return (
        f"note: the clips and story.mp4 are {width}x{height} pixels, the model's own size; --upscale {factor} "
        f"writes them {width * factor}x{height * factor} to watch (the shots are rendered again, to the same frames)"
    )


def failure_line(failure: Any) -> str:
    """A failed story of a batch, named once: most messages already start with the script's path."""
    name = str(failure.script)
    return f"error: {failure.message}" if failure.message.startswith(name) else f"error: {name}: {failure.message}"


def check_magcache(runtime: RuntimeOptions) -> None:
    """A calibration render caches nothing; a curve file is read before any model loads."""
    from storymem_cli.models.magcache import load_curves  # torch-free

    if runtime.magcache_calibrate is not None and runtime.cache != "none":
        raise InvalidInputError(
            f"--magcache-calibrate cannot be combined with --cache {runtime.cache}: it measures every step",
            hint="calibrate in a render without --cache, then render with --cache magcache --magcache-curve FILE",
        )
    if runtime.magcache_curve is not None:
        load_curves(runtime.magcache_curve)


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
    ctx: typer.Context,
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
    steps: int | None = typer.Option(None, min=1, max=MAX_STEPS, help="Denoising steps per shot (default: the model's)."),
    seed: int | None = typer.Option(
        None, min=0, max=SEED_MAX, help="Base seed; shot i gets seed+i (0-based across scenes) unless the script sets one. Default 0."
    ),
    guidance: float | None = typer.Option(
        None,
        help="Classifier-free guidance of both experts (paper: 3.5). 1 turns guidance off and skips the "
        "unconditional pass: for a step-distilled LoRA given with --style-lora (e.g. Wan2.2 Lightning, "
        "--steps 4 --guidance 1).",
    ),
    guidance_2: float | None = typer.Option(
        None, "--guidance-2", help="Guidance of the low-noise expert only (default: --guidance, else the model's)."
    ),
    lora: Path | None = typer.Option(None, help="StoryMem LoRA file or folder (default: the model's)."),
    style_lora: list[str] = typer.Option(
        [], "--style-lora", metavar=STYLE_LORA_METAVAR,
        help="Extra Wan LoRA (diffusers, ComfyUI/diffusion-pipe/ai-toolkit, kohya/musubi or lightx2v layout, "
        "docs/lora.md) as PATH[:STRENGTH], on both pairs and both experts; in front, t2v= or m2v= puts it on "
        "one pair (t2v: the first shot's T2V experts, m2v: the memory shots' I2V experts), high= or low= on one "
        "expert, t2v:high= etc. on one of each (Lightning ships four files). Repeat for several.",
    ),
    scheduler: Scheduler = field_option(
        RenderOptions, "scheduler", choice=Scheduler,
        help="Sampler: unipc (paper) or euler (what step-distilled LoRAs such as Lightning were distilled for).",
    ),
    flow_shift: list[str] = typer.Option(
        [], "--flow-shift", metavar="[t2v=|m2v=]SHIFT",
        help="Flow-matching shift of both pairs, or of one with t2v= / m2v= (default: the model's; paper: 12 "
        "for the first shot, 4 for the others; Lightning: 5).",
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
    # How the model runs: each parameter is named as the RuntimeOptions field it fills (from_params).
    offload: Offload = field_option(
        RuntimeOptions, "offload", choice=Offload,
        help="GPU memory: none (all on the GPU; A14B needs ~74 GiB), model (one component on the GPU at a time), "
        "group (block by block: least memory, slowest).",
    ),
    device: str | None = field_option(
        RuntimeOptions, "device", metavar="DEVICE", help="torch device, e.g. cuda, cuda:1, cpu (default: cuda if present)."
    ),
    dtype: Dtype = field_option(
        RuntimeOptions, "dtype", choice=Dtype,
        help="Transformer precision; auto: the model's on a GPU (bf16 for A14B), float32 on the CPU.",
    ),
    vae_tiling: bool = field_option(
        RuntimeOptions, "vae_tiling", "--vae-tiling", help="Decode in tiles: less GPU memory at large sizes."
    ),
    attention_backend: str | None = field_option(
        RuntimeOptions, "attention_backend", "--attention", metavar="BACKEND",
        help="diffusers attention backend, e.g. flash, _native_cudnn, flash_4_hub / sage_hub (flash-attn-4 / "
        "sageattention from PyPI: pip install \"storymem-cli[attention]\"), or auto: on a GPU the fastest of FlashAttention "
        "3, flash-attn-4 and sageattention that beats SDPA within 3x SDPA's error, measured once per device; else "
        "PyTorch SDPA (the default). run.json records the one used and the measurements.",
    ),
    cache: Cache = field_option(
        RuntimeOptions, "cache", choice=Cache,
        help="Step caching on both experts (diffusers' hooks): first-block (reuse the last step's output "
        "while the first block's residual on the shot's frames changes less than --cache-threshold), "
        "taylorseer (each expert's first 3 steps in full, then one in every --cache-interval, the output "
        "extrapolated between) or magcache (skip steps by the Wan2.2 experts' published magnitude-ratio "
        "curves, --magcache-*). Faster, slightly different frames.",
    ),
    cache_threshold: float = field_option(
        RuntimeOptions, "cache_threshold", help="first-block cache: relative residual change that recomputes."
    ),
    cache_interval: int = field_option(
        RuntimeOptions, "cache_interval", help="taylorseer cache: full computation every N steps."
    ),
    magcache_threshold: float = field_option(
        RuntimeOptions, "magcache_threshold", help="magcache: accumulated ratio error up to which a step is skipped (authors: 0.06)."
    ),
    magcache_k: int = field_option(RuntimeOptions, "magcache_k", "--magcache-k", help="magcache: most steps skipped in a row (authors: 2)."),
    magcache_retention: float | None = field_option(
        RuntimeOptions, "magcache_retention",
        help="magcache: fraction of each expert's first steps never skipped (default: the authors', 0.1 for "
        "memory shots, 0.4 for the first shot).",
    ),
    magcache_experts: MagcacheExperts = field_option(
        RuntimeOptions, "magcache_experts", choice=MagcacheExperts,
        help="magcache: which experts skip steps: auto (the authors': both on the first shot, the low-noise "
        "expert on memory shots), low or both (memory shots skip ~20 of 40 steps instead of ~12).",
    ),
    magcache_curve: Path | None = field_option(
        RuntimeOptions, "magcache_curve", metavar="FILE",
        help="magcache: magnitude ratios measured with --magcache-calibrate (default: the MagCache authors' Wan2.2 curves).",
    ),
    magcache_calibrate: Path | None = field_option(
        RuntimeOptions, "magcache_calibrate", metavar="FILE",
        help="Measure MagCache's magnitude ratios on this render (it skips nothing: the frames are the plain "
        "render's) and write them to FILE after every shot, for --cache magcache --magcache-curve FILE.",
    ),
    compile: bool = field_option(  # noqa: A002  named as the field it fills
        RuntimeOptions, "compile", "--compile",
        help="torch.compile the transformer blocks (minutes of compiling, then faster steps).",
    ),
    quantize: Quantize = field_option(
        RuntimeOptions, "quantize", choice=Quantize,
        help="fp8: the experts in float8, half the GPU memory, slightly different frames (fp8 matmuls through "
        "torchao on H100/H200/L40-class GPUs in bfloat16, storage only elsewhere; pip install \"storymem-cli[fp8]\").",
    ),
    continuation: Continuation = field_option(
        RenderOptions, "continuation", choice=Continuation,
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
    retrieval: Retrieval | None = typer.Option(
        None,
        help="How each shot's memory is chosen: characters (the entries of the characters its prompt names "
        "first, then the usual memory; the default when the script declares characters) or paper (every entry "
        "in the bank, the paper's memory).",
    ),
    describe_characters: bool = typer.Option(
        False, "--describe-characters",
        help="Append the description of each character a prompt names to that prompt (the paper's own "
        "mitigation); run.json records the prompt used.",
    ),
    memory_from: Path | None = typer.Option(
        None, "--memory-from", metavar="RUN_DIR",
        help="Series: start from the memory of an earlier, finished run of the same model (its keyframes "
        "and their characters become references of this story; that folder is only read).",
    ),
    restart: bool = typer.Option(False, "--restart", help="Discard this story's earlier render in the folder."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (mode, seed, frames per shot); load no model."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    shard: str | None = typer.Option(
        None, metavar="K/N", help="K/N: render only the K-th of N deterministic shares of the scripts (K from 1)."
    ),
    parallel: Parallel = typer.Option(
        Parallel.auto,
        help="Under torchrun (one story on N GPUs): how each transformer forward is split over the N "
        "processes: ulysses (the head count, 40 for A14B, must divide by N), ring (needs --attention flash "
        "or another backend that returns log-sum-exp) or auto (Ulysses as far as the heads allow, the rest "
        "ring), or cfg (the conditional and unconditional passes on the two halves of the processes, one "
        "exchange per step; each half split as auto splits it, e.g. Ulysses 2 x 2 from 4 processes). Rank 0 "
        "alone writes the run folder. Ignored in a single process.",
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
    from storymem_cli.cli.paths import check_output_path
    from storymem_cli.render.batch import batch_exit_code, plan_jobs, run_jobs
    from storymem_cli.render.parallel import (
        check_options,
        check_size,
        finish,
        follow,
        launch_from_env,
        start,
    )
    from storymem_cli.render.preflight import preflight
    from storymem_cli.render.progress import make_progress
    from storymem_cli.render.session import RenderSession
    from storymem_cli.render.shard import parse_shard, shard_warning, take_shard
    from storymem_cli.render.style_args import parse_flow_shifts, parse_style_lora

    width, height = parse_size(size)
    check_rope_shift(rope_shift)
    check_field("--guidance", guidance, RenderOptions.model_fields["guidance"])
    check_field("--guidance-2", guidance_2, RenderOptions.model_fields["guidance_2"])
    runtime = from_params(RuntimeOptions, ctx)
    styles = tuple(parse_style_lora(text) for text in style_lora)
    flow_shift_t2v, flow_shift_m2v = parse_flow_shifts(flow_shift)
    check_files(lora)
    check_magcache(runtime)
    if output is not None:
        check_output_path(output, "-o", folder=True)
    options = RenderOptions(
        model=model,
        width=width,
        height=height,
        frames=frames,
        steps=steps,
        seed=seed,
        guidance=guidance,
        guidance_2=guidance_2,
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
        style_loras=styles,
        scheduler=scheduler.value,
        flow_shift_t2v=flow_shift_t2v,
        flow_shift_m2v=flow_shift_m2v,
        runtime=runtime,
        upscale=upscale,
        retrieval=retrieval.value if retrieval else None,
        describe_characters=describe_characters,
        memory_from=str(memory_from.expanduser().resolve()) if memory_from else None,
    )
    batch = len(scripts) > 1 or shard is not None
    if shard is not None:
        k, n = parse_shard(shard)
        warning = shard_warning(len(scripts), k, n)
        if warning:
            typer.echo(f"warning: {warning}", err=True)
        scripts = take_shard(scripts, k, n)
        if not scripts:
            typer.echo(f"shard {shard}: no scripts in this share", err=True)
    jobs = plan_jobs(scripts, output, batch=batch) if scripts else []
    launch = launch_from_env()  # torchrun's environment; only rank 0 (the leader) touches the run folder
    leads = launch is None or launch.leader
    jobs, early = preflight(jobs, options, batch=batch, writes=not dry_run and leads)  # before torch is imported

    if launch is not None:  # torchrun: every rank shares each forward, rank 0 does the rest
        check_options(launch, runtime.device, runtime.offload, runtime.cache, runtime.magcache_calibrate)
        start(launch, runtime.device, parallel.value)
        if not launch.leader:
            try:
                follow()
            finally:
                finish(launch)
            return

    progress = make_progress(sys.stderr)
    busy: list[Any] = []  # stories another process is rendering right now (batch only)
    current: list[Any] = []  # the story being rendered, for the message after Ctrl-C
    interrupted = False
    for failure in early:
        progress.note(failure_line(failure))
    try:
        session = RenderSession(options, progress=progress, restart=restart)
        if not dry_run:
            session.check_device()
            if launch is not None:
                check_size(launch, session.settings())
            progress.note(f"model: {session.describe_model()}")
        do_one = session.dry_run if dry_run else session.render

        def render_one(job: Any) -> dict[str, Any]:
            current[:] = [job]
            return do_one(job)

        def on_busy(story: Any) -> None:
            busy.append(story)
            progress.note(f"skipped {story.script}: {story.message}")

        if batch:
            results, failures = run_jobs(
                jobs, render_one, lambda failure: progress.note(failure_line(failure)), on_busy
            )
            failures = early + failures
        else:  # one story: its error goes straight to the app's handler (message, hint, exit code)
            results, failures = [render_one(job) for job in jobs], []
    except KeyboardInterrupt:
        if dry_run or not current:
            raise
        interrupted = True
    finally:
        progress.close()
        if launch is not None:
            finish(launch)
    if interrupted:
        typer.echo(interrupted_message(current[0], ctx.meta.get(ARGV_KEY)), err=True)
        raise typer.Exit(EXIT_INTERRUPTED)

    if json_output:
        failed = [failure.as_dict() for failure in failures]
        skipped = [story.as_dict() for story in busy]
        _echo_json(results[0] if not batch and results else {"stories": results, "failed": failed, "skipped": skipped})
    elif dry_run:
        for plan in results:
            _echo_plan(plan)
    else:
        for result in results:
            typer.echo(result["video"])
    if results and not dry_run and ctx.get_parameter_source("upscale").name == "DEFAULT":
        video = session.settings().video
        note = small_video_note(video.width, video.height)
        if note:
            typer.echo(note, err=True)

    if failures:
        names = ", ".join(str(failure.script) for failure in failures)
        typer.echo(f"error: {len(failures)} of {len(jobs) + len(early)} stories failed: {names}", err=True)
        raise typer.Exit(batch_exit_code(failures))
