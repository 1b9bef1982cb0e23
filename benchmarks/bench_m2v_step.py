"""Cost of one M2V denoising step, measured with the pipelines themselves.

Prints two ratios:
  1. one StoryMem M2V step (M memory frames + T shot frames, negative RoPE) over one stock diffusers
     WanImageToVideoPipeline step on a video with the same number of latent frames (goal <= 1.05:
     memory conditioning should cost nothing beyond the extra frames);
  2. an M2V step with M memory frames over one with none (the price of memory);
  3. per fast mode of `storymem render` (--cache, --compile, --quantize fp8, --guidance 1; applied by
     models/speed.py, the render's own code), the mean step time of a whole M2V run over the default's
     (a cache skips some steps' blocks, so whole runs are compared, not single steps).

Runs on CPU with a mid-sized random transformer (the tiny preset's is so small that Python overhead
dominates); pass --device cuda and larger sizes on a GPU. Step time = interval between step
callbacks, first steps dropped as warm-up. Each round runs the three cases back to back and
gives its own ratio of medians; the printed ratio is the median over rounds (load from other
processes drifts over seconds, so paired rounds cancel most of it); best-vs-best is shown too.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_m2v_step.py
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import timeit

import numpy as np
import PIL.Image
import torch
from diffusers import WanImageToVideoPipeline, WanTransformer3DModel

from storymem_cli.config import RopeConfig
from storymem_cli.models.tiny import TEXT_DIM, build_tiny_components
from storymem_cli.pipeline.layout import frame_positions, latent_frame_count
from storymem_cli.pipeline.m2v import StoryMemM2VPipeline
from storymem_cli.pipeline.rope import rope_positions
from storymem_cli.pipeline.scheduler import make_scheduler

WARMUP_STEPS = 2
# Part 3: each fast mode as RuntimeOptions fields (models/speed.py applies them) and call overrides.
FAST_MODES: dict[str, tuple[dict, dict]] = {
    "first-block cache": ({"cache": "first-block"}, {}),
    "taylorseer cache": ({"cache": "taylorseer"}, {}),
    "compile": ({"compile": True}, {}),
    "fp8 (layerwise)": ({"quantize": "fp8"}, {}),
    "guidance 1": ({}, {"guidance_scale": 1.0}),
}


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--memory", type=int, default=10, help="memory frames M (paper: up to 10)")
    ap.add_argument("--frames", type=int, default=81, help="shot frames (4k+1); 81 = 21 latent frames")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--height", type=int, default=80)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5, help="steps per run; the first 2 are warm-up")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--modes", default=",".join(FAST_MODES), help="fast modes to compare with the default, "
                    "comma-separated; '' skips part 3 (choices: %(default)s)")  # fmt: skip
    ap.add_argument("--mode-steps", type=int, default=12, help="steps per run in part 3 (a cache needs a few)")
    return ap.parse_args()


def transformer(args: argparse.Namespace, seed: int) -> WanTransformer3DModel:
    torch.manual_seed(seed)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=args.heads, attention_head_dim=args.head_dim,
        in_channels=36, out_channels=16, text_dim=TEXT_DIM, freq_dim=256,
        ffn_dim=4 * args.heads * args.head_dim, num_layers=args.layers,
    ).eval()  # fmt: skip


def step_times(run) -> list[float]:  # type: ignore[no-untyped-def]
    stamps: list[float] = []

    def on_step(_pipe, _i, _t, _kwargs):  # type: ignore[no-untyped-def]
        stamps.append(time.perf_counter())
        return {}

    run(on_step)
    return np.diff(stamps)[WARMUP_STEPS - 1 :].tolist()


def rope_us(model: WanTransformer3DModel, latent_frames: int, args: argparse.Namespace, memory_frames: int = 0) -> float:
    """Microseconds per call of ``model.rope`` on a latent video of the benchmark's size."""
    hidden = torch.zeros(1, 36, latent_frames, args.height // 8, args.width // 8, device=args.device)
    positions = frame_positions(memory_frames, latent_frames - memory_frames, RopeConfig())
    with rope_positions([model] if memory_frames else [], positions):
        return timeit.timeit(lambda: model.rope(hidden), number=100) / 100 * 1e6


def main() -> None:
    args = parse()
    device = torch.device(args.device)
    parts = build_tiny_components()
    shared = {k: parts[k] for k in ("tokenizer", "text_encoder", "vae")}
    high, low = transformer(args, 1), transformer(args, 2)
    stock_pipe = WanImageToVideoPipeline(
        **shared, scheduler=make_scheduler(parts["scheduler"].config, 4.0),
        transformer=copy.deepcopy(high), transformer_2=copy.deepcopy(low), boundary_ratio=0.9,
    ).to(device)  # fmt: skip
    m2v_pipe = StoryMemM2VPipeline(
        **shared, scheduler=make_scheduler(parts["scheduler"].config, 4.0),
        transformer=high, transformer_2=low, boundary_ratio=0.9,
    ).to(device)  # fmt: skip
    for pipe in (stock_pipe, m2v_pipe):
        pipe.set_progress_bar_config(disable=True)

    rng = np.random.default_rng(0)
    memory = [rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8) for _ in range(args.memory)]
    shot_latents = latent_frame_count(args.frames)
    total_latents = args.memory + shot_latents
    stock_frames = (total_latents - 1) * 4 + 1  # a stock video with as many latent frames as M + T
    common = {"prompt": "a bench", "height": args.height, "width": args.width, "num_inference_steps": args.steps,
                  "guidance_scale": 3.5, "output_type": "latent"}  # fmt: skip

    def m2v(mem):  # type: ignore[no-untyped-def]
        return lambda cb: m2v_pipe(
            **common, memory_images=mem, num_frames=args.frames, rope=RopeConfig(),
            generator=torch.Generator().manual_seed(0), callback_on_step_end=cb,
        )  # fmt: skip

    def stock(cb):  # type: ignore[no-untyped-def]
        return stock_pipe(
            **common, image=PIL.Image.fromarray(memory[0] if memory else np.zeros((8, 8, 3), np.uint8)),
            num_frames=stock_frames, generator=torch.Generator().manual_seed(0), callback_on_step_end=cb,
        )  # fmt: skip

    times: dict[str, list[float]] = {"m2v": [], "stock": [], "none": []}
    paired: dict[str, list[float]] = {"stock": [], "none": []}  # per-round ratios: runs seconds apart
    with torch.no_grad():
        for _ in range(args.rounds):
            round_times = {"m2v": step_times(m2v(memory)), "stock": step_times(stock), "none": step_times(m2v([]))}
            for key, values in round_times.items():
                times[key] += values
            for key in paired:
                paired[key].append(statistics.median(round_times["m2v"]) / statistics.median(round_times[key]))
    best = {k: min(v) for k, v in times.items()}
    median = {k: statistics.median(v) for k, v in times.items()}
    tokens = (args.height // 16) * (args.width // 16)
    print(f"device {device}; transformer {args.layers} layers x {args.heads} heads x {args.head_dim}; "
          f"{tokens} tokens per latent frame; torch threads {torch.get_num_threads()}")  # fmt: skip
    rows = [
        ("m2v", f"M2V step, M={args.memory} + T={shot_latents} latent frames (negative rope)"),
        ("stock", f"stock WanImageToVideoPipeline step, {total_latents} latent frames"),
        ("none", f"M2V step without memory, T={shot_latents} latent frames"),
    ]
    for key, label in rows:
        print(f"{label:<62} best {best[key] * 1e3:8.1f} ms   median {median[key] * 1e3:8.1f} ms   n={len(times[key])}")
    print(f"ratio M2V / stock at equal latent frames: {statistics.median(paired['stock']):.3f} "
          f"(median of {args.rounds} paired rounds; {best['m2v'] / best['stock']:.3f} best-vs-best)  (goal <= 1.05)")  # fmt: skip
    print(f"rope tables per forward: ours (cached) {rope_us(m2v_pipe.transformer, total_latents, args, memory_frames=args.memory):.1f} us, "
          f"stock {rope_us(stock_pipe.transformer, total_latents, args):.1f} us")  # fmt: skip
    print(f"ratio M={args.memory} memory / no memory (price of memory): {statistics.median(paired['none']):.3f} "
          f"(median of paired rounds; {best['m2v'] / best['none']:.3f} best-vs-best)")  # fmt: skip
    if args.modes:
        with torch.no_grad():
            compare_modes(args, m2v_pipe, memory, common)


def compare_modes(args: argparse.Namespace, m2v_pipe: StoryMemM2VPipeline, memory: list, common: dict) -> None:
    """Part 3: the mean step time of a whole M2V run per fast mode over the default's, paired per round."""
    from storymem_cli.models.runtime import RuntimeOptions
    from storymem_cli.models.speed import apply_speed_options, reset_step_cache

    names = [name for name in args.modes.split(",") if name]
    if unknown := set(names) - set(FAST_MODES):
        raise SystemExit(f"--modes: unknown {sorted(unknown)}; choose from {', '.join(FAST_MODES)}")
    pipes = {"default": (m2v_pipe, {})}
    for name in names:
        options, call = FAST_MODES[name]
        pipe = copy.deepcopy(m2v_pipe)
        for expert in (pipe.transformer, pipe.transformer_2):
            apply_speed_options(expert, RuntimeOptions(**options), torch.float32)
        pipes[name] = (pipe, call)

    def run(name: str) -> float:
        pipe, call = pipes[name]
        for expert in (pipe.transformer, pipe.transformer_2):
            reset_step_cache(expert)
        started = time.perf_counter()
        pipe(**{**common, "num_inference_steps": args.mode_steps, **call}, memory_images=memory, num_frames=args.frames,
             rope=RopeConfig(), generator=torch.Generator().manual_seed(0))  # fmt: skip
        return (time.perf_counter() - started) / args.mode_steps

    compile_s = {name: run(name) * args.mode_steps for name in pipes}  # warm-up run: compiling happens here
    ratios: dict[str, list[float]] = {name: [] for name in names}
    means: dict[str, list[float]] = {name: [] for name in pipes}
    for _ in range(args.rounds):
        round_means = {name: run(name) for name in pipes}
        for name, value in round_means.items():
            means[name].append(value)
        for name in names:
            ratios[name].append(round_means[name] / round_means["default"])
    print(f"\nfast modes: mean step time over a whole {args.mode_steps}-step M2V run (M={args.memory}), "
          f"against the default; median of {args.rounds} paired rounds")  # fmt: skip
    print(f"  {'mode':<20} {'step ms':>9} {'ratio':>7}  first run s (compiling included)")
    for name in pipes:
        ratio = "1.000" if name == "default" else f"{statistics.median(ratios[name]):.3f}"
        print(f"  {name:<20} {statistics.median(means[name]) * 1e3:>9.1f} {ratio:>7}  {compile_s[name]:.1f}")


if __name__ == "__main__":
    main()
