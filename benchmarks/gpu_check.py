"""The device check: the production render path on a GPU, and the numbers a user plans with.

One command, one table, one JSON file. It

1. builds a model folder with random weights at Wan2.2 A14B widths but only a few layers (the real
   expert config from ``models/wan_a14b.py``, a UMT5 text encoder at d_model 4096, the real Wan VAE
   config, a random rank-128 StoryMem LoRA in the published layout from ``models/lora_keys.py``);
2. renders a 4-shot story (a reference image, two continuation shots) at 832x480x81 through the CLI
   (``storymem render --model FOLDER``, in this process) once per memory mode (offload
   none / model / group, with and without VAE tiling, and once with ``--continuation mm2v``, whose
   story has no reference so its first shot is T2V), recording wall time per shot, peak GPU memory
   (``torch.cuda.max_memory_allocated``) and whether it finished;
3. times --attention auto's candidate kernels at the real self-attention shape (time, TFLOP/s, error
   against fp32 on a slice), then one full 40-layer expert forward at 48,360 tokens (10 memory + 21
   shot latent frames at 832x480) on SDPA and per fast mode: compile with the kernel auto picks,
   fp8 (torchao) + compile + that kernel, compile alone, group offload with and without CUDA streams;
4. scales the measurements to a whole A14B story (10 shots, 40 steps, guidance on both experts,
   memory growing by 3 keyframes a shot up to 10), with and without MagCache at the authors'
   threshold (its skips from the published curves): projected minutes per story and peak GB per
   offload mode. Projections are computed, not measured, and say so.

    python benchmarks/gpu_check.py --out "$OUT"      # on one H200: about 5 minutes
    python benchmarks/gpu_check.py --tiny            # the same code at tiny widths on the CPU (a test runs it)

With ``--tiny`` every size shrinks (64x48x9 video, 2-layer forward) so the whole check runs on the
CPU in seconds; its numbers mean nothing, its code paths are the GPU run's. Modes left when the time
budget (``--budget-s``) is spent are reported as skipped, never dropped silently.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import math
import os
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STORY_SHOTS = 10  # a typical ST-Bench story (7-12 shots)
PAPER_STEPS = 40  # SPEC 4
FORWARDS_PER_STEP = 2  # guidance 3.5 on both experts: a conditional and an unconditional pass
A14B_LAYERS = 40
GIB = 2**30
# cuDNN, PyTorch's flash, flash-attn 2 and sage (2.x) were timed on an H200 before (docs/models.md) and lost
# to SDPA or were not installed; the kernels part times auto's candidates (models/attention_pick.py).
KERNEL_BACKENDS = ("native", "_flash_3", "flash_4_hub", "sage_hub")
MEMORY_FRAMES = 10  # the paper's memory capacity: 10 latent frames before the shot's 21

# (name, extra render arguments, with a reference image): in order of value, so a spent time budget
# drops the least informative.
MODES: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("offload none", ("--offload", "none"), True),
    ("magcache + compile, 12 steps", ("--offload", "none", "--compile", "--cache", "magcache", "--steps", "12"), True),
    ("offload group", ("--offload", "group"), True),
    ("offload model", ("--offload", "model"), True),
    ("fp8 + offload none", ("--offload", "none", "--quantize", "fp8"), True),
    ("fast: compile, first-block cache, attention auto", ("--offload", "none", "--compile", "--cache", "first-block",
                                                          "--attention", "auto"), True),  # fmt: skip
    ("fp8 + offload group", ("--offload", "group", "--quantize", "fp8"), True),
    ("offload none + VAE tiling", ("--offload", "none", "--vae-tiling"), True),
    ("mm2v, T2V first shot", ("--offload", "none", "--continuation", "mm2v"), False),
    ("offload group + VAE tiling", ("--offload", "group", "--vae-tiling"), True),
    ("offload model + VAE tiling", ("--offload", "model", "--vae-tiling"), True),
)
FAST_ARGS = ("--continuation", "--quantize", "--compile", "--cache")  # renders that are not a plain offload mode
PARTS = ("kernels", "forwards", "renders")  # kernels and forwards first: they feed every projection and the table


@dataclass(frozen=True)
class CheckSize:
    """Everything that differs between the GPU check and its CPU rehearsal."""

    device: str
    dtype: str
    transformer: dict[str, Any]  # WanTransformer3DModel config without in_channels; num_layers = render layers
    text_encoder: dict[str, Any]  # UMT5Config overrides (vocab from the byte tokenizer)
    vae: dict[str, Any]  # AutoencoderKLWan config ({} = diffusers' default: the Wan2.1 VAE Wan2.2 A14B uses)
    width: int
    height: int
    frames: int
    steps: int
    lora_rank: int
    forward_layers: int  # layers of the expert timed alone
    forward_memory_frames: int
    budget_s: float


def full_size() -> CheckSize:
    from storymem_cli.models.wan_a14b import a14b_transformer_config

    transformer = a14b_transformer_config("i2v")
    del transformer["in_channels"]
    return CheckSize(
        device="cuda", dtype="bfloat16", transformer={**transformer, "num_layers": 2},
        text_encoder={"d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 1, "num_heads": 64},  # UMT5-XXL widths
        vae={}, width=832, height=480, frames=81, steps=2, lora_rank=128,
        forward_layers=A14B_LAYERS, forward_memory_frames=MEMORY_FRAMES, budget_s=300.0,
    )  # fmt: skip


def tiny_size() -> CheckSize:
    from storymem_cli.models.tiny import TINY_TEXT_ENCODER, TINY_TRANSFORMER, TINY_VAE

    text = {k: TINY_TEXT_ENCODER[k] for k in ("d_model", "d_kv", "d_ff", "num_layers", "num_heads")}
    return CheckSize(
        device="cpu", dtype="float32", transformer=dict(TINY_TRANSFORMER), text_encoder=text, vae=dict(TINY_VAE),
        width=64, height=48, frames=9, steps=1, lora_rank=4, forward_layers=2, forward_memory_frames=2,
        budget_s=120.0,
    )  # fmt: skip


# -- 1. the model folder -------------------------------------------------------------------------------


def build_model_folder(size: CheckSize, dest: Path) -> dict[str, int]:
    """Write ``dest`` as a storymem model folder (i2v/, t2v/, lora/, storymem_model.json); returns
    the parameter counts the projections need."""
    import torch
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanTransformer3DModel,
    )
    from safetensors.torch import save_file
    from transformers import UMT5Config, UMT5EncoderModel

    from storymem_cli.config import M2V_SAMPLING, T2V_SAMPLING, VideoConfig
    from storymem_cli.models.lora_files import STORYMEM_VARIANT_DIRS
    from storymem_cli.models.lora_keys import expected_keys
    from storymem_cli.models.presets import MemoryDefaults, ModelPreset
    from storymem_cli.models.tiny import build_tokenizer
    from storymem_cli.train.scratch import write_model_dir

    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    z = size.vae.get("z_dim", 16)  # 16: the Wan2.1 VAE (diffusers' default config)
    with torch.device(size.device):  # random init where it runs: seconds at A14B widths on a GPU
        parts = {
            "tokenizer": tokenizer,
            "text_encoder": UMT5EncoderModel(UMT5Config(**size.text_encoder, vocab_size=len(tokenizer))),
            "vae": AutoencoderKLWan(**size.vae),
            "scheduler": UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True),
            "i2v": WanTransformer3DModel(in_channels=2 * z + 4, **size.transformer),
            "t2v": WanTransformer3DModel(in_channels=z, **size.transformer),
        }
    dtype = getattr(torch, size.dtype)
    for key in ("text_encoder", "i2v", "t2v"):
        parts[key] = parts[key].to(dtype).eval()
    steps = {"steps": size.steps}
    preset = ModelPreset(
        name="gpu-check", description="random weights at Wan2.2 A14B widths, few layers (benchmarks/gpu_check.py)",
        video=VideoConfig(width=size.width, height=size.height, frames=size.frames),
        steps=size.steps, memory=MemoryDefaults(embedder="tiny", aesthetic="none"),
        t2v=T2V_SAMPLING.model_copy(update=steps), m2v=M2V_SAMPLING.model_copy(update=steps),
        i2v_source="i2v", t2v_source="t2v", lora_source="lora", transformer_dtype=size.dtype,
        text_encoder_dtype=size.dtype,
    )  # fmt: skip
    write_model_dir(dest, parts, preset)

    # A random StoryMem LoRA in the published layout, the same for both experts and both variants.
    expert = parts["i2v"]
    gen = torch.Generator().manual_seed(1)
    lora = {}
    for key in expected_keys(len(expert.blocks)):
        linear = expert.get_submodule(key.diffusers_module)
        shape = (size.lora_rank, linear.in_features) if key.factor == "A" else (linear.out_features, size.lora_rank)
        lora[key.published_key] = torch.randn(shape, generator=gen) * 0.01
    for variant in STORYMEM_VARIANT_DIRS.values():
        folder = dest / "lora" / variant
        folder.mkdir(parents=True, exist_ok=True)
        for stem in ("backbone_high_noise", "backbone_low_noise"):
            save_file(lora, str(folder / f"{stem}.safetensors"))
    counts = {
        "expert": sum(p.numel() for p in expert.parameters()),
        "expert_block": sum(p.numel() for p in expert.blocks[0].parameters()),
        "expert_layers": len(expert.blocks),
        "text_encoder": sum(p.numel() for p in parts["text_encoder"].parameters()),
    }
    del parts, expert
    _free()
    return counts


def full_a14b_counts() -> dict[str, int]:
    """Parameter counts of the real A14B expert and UMT5-XXL encoder, on the meta device (no memory)."""
    from accelerate import init_empty_weights
    from transformers import UMT5Config, UMT5EncoderModel

    from storymem_cli.models.wan_a14b import (
        a14b_transformer_config,
        build_meta_transformer,
    )

    expert = build_meta_transformer(a14b_transformer_config("i2v"))
    umt5_xxl = UMT5Config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                          feed_forward_proj="gated-gelu")  # fmt: skip  # google/umt5-xxl, Wan's text encoder
    with init_empty_weights():
        text = UMT5EncoderModel(umt5_xxl)
    text.tie_weights()  # one embedding table, as loaded from the checkpoint (5.68 B parameters, ~11.4 GB in bf16)
    return {
        "expert": sum(p.numel() for p in expert.parameters()),
        "expert_block": sum(p.numel() for p in expert.blocks[0].parameters()),
        "expert_layers": len(expert.blocks),
        "text_encoder": sum(p.numel() for p in text.parameters()),
    }


# -- 2. renders through the CLI ------------------------------------------------------------------------


def write_story(folder: Path, size: CheckSize, with_reference: bool) -> Path:
    """Cut, continuation, cut, continuation; optionally a reference image (a square one: it is cropped)."""
    import numpy as np
    import PIL.Image

    folder.mkdir(parents=True, exist_ok=True)
    story: dict[str, Any] = {
        "story_name": "Device Check",
        "story_overview": "A lighthouse keeper climbs the tower at dusk and lights the lamp.",
        "scenes": [{
            "scene_num": 1,
            "video_prompts": [
                "A lighthouse keeper in a yellow raincoat walks up a rocky path at dusk. Wide shot.",
                "The keeper opens the heavy wooden door of the lighthouse. Medium shot.",
                "Inside, the keeper climbs a spiral staircase, lantern in hand. Low-angle shot.",
                "At the top the keeper lights the great lamp and its beam sweeps the sea. Close-up.",
            ],
            "cut": [True, False, True, False],
        }],
    }  # fmt: skip
    if with_reference:
        side = max(size.width, size.height)
        pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
        PIL.Image.fromarray(pixels).save(folder / "keeper.png")
        story["references"] = [{"image": "keeper.png", "name": "the keeper"}]
    path = folder / "story.json"
    path.write_text(json.dumps(story, indent=2), encoding="utf-8")
    return path


@dataclass
class ModeResult:
    mode: str
    args: list[str]
    finished: bool = False
    skipped: str | None = None
    error: str | None = None
    shot_s: list[float] = field(default_factory=list)  # wall time per shot (run.json timings)
    generate_s: list[float] = field(default_factory=list)  # of which the model's generate call
    modes: list[str] = field(default_factory=list)  # each shot's mode (t2v, mr2v, m2v, mi2v, mm2v)
    peak_gib: float | None = None  # torch.cuda.max_memory_allocated over the render
    wall_s: float | None = None  # the whole command: model loads included
    forwards: list[int] = field(default_factory=list)  # expert forwards per shot (run.json)
    forwards_skipped: list[int] = field(default_factory=list)  # of which a step cache skipped
    graphs_compiled: int | None = None  # torch.compile graphs made during the render (recompiles show here)


def run_cli(args: list[str]) -> int:
    """``storymem ARGS`` in this process (the console script's app), stdout kept out of the table."""
    from storymem_cli.cli.app import app

    with contextlib.redirect_stdout(io.StringIO()):
        result = app(args=args, prog_name="storymem", standalone_mode=False)
    return int(result or 0)


def render_mode(name: str, extra: tuple[str, ...], script: Path, model_dir: Path, out: Path, size: CheckSize) -> ModeResult:
    import torch

    cuda = size.device.startswith("cuda")
    # Compiling on the CPU takes most of a minute per render at tiny size: the rehearsal runs the rest of
    # the mode (tests/render/test_fast_modes.py renders --compile on the CPU).
    extra = tuple(arg for arg in extra if cuda or arg != "--compile")
    result = ModeResult(mode=name, args=list(extra))
    run_dir = out / "runs" / name.replace(" ", "_").replace(",", "").replace("+", "plus").replace(":", "")
    _free()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    graphs = _graphs_compiled()
    try:
        code = run_cli(["render", str(script), "-o", str(run_dir), "--model", str(model_dir), "--device", size.device,
                        "--restart", *extra])  # fmt: skip
        result.finished = code == 0
        result.error = None if code == 0 else f"exit code {code}"
    except Exception as err:  # noqa: BLE001  the check reports a broken mode and goes on to the next
        result.error = "".join(traceback.format_exception_only(type(err), err)).strip()
    result.wall_s = round(time.perf_counter() - started, 2)
    result.graphs_compiled = _graphs_compiled() - graphs
    if cuda:
        result.peak_gib = round(torch.cuda.max_memory_allocated() / GIB, 2)
    record_file = run_dir / "run.json"
    if record_file.is_file():
        shots = json.loads(record_file.read_text())["shots"]
        result.shot_s = [s["timings"]["total_s"] for s in shots]
        result.generate_s = [s["timings"]["generate_s"] for s in shots]
        result.modes = [s["mode"] for s in shots]
        result.forwards = [s.get("forwards", 0) for s in shots]
        result.forwards_skipped = [s.get("forwards_skipped", 0) for s in shots]
    return result


def _graphs_compiled() -> int:
    """Graphs torch.compile has made in this process so far (dynamo's own count)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


# -- 3. one full expert forward per attention backend and fast mode ----------------------------------


@dataclass
class ForwardResult:
    backend: str  # the attention backend, or the fast mode (on SDPA)
    seconds: float | None = None
    peak_gib: float | None = None
    tokens: int | None = None
    layers: int | None = None
    first_call_s: float | None = None  # the warm-up forward: compiling included
    weights_gib: float | None = None  # GPU memory held by the expert before the first forward
    other_length_first_s: float | None = None  # compiled: first forward with no memory frames (a recompile?)
    other_length_s: float | None = None  # ... and the one after it
    unavailable: str | None = None


@dataclass(frozen=True)
class FastForward:
    """A fast mode timed on a fresh expert (they change it in place)."""

    label: str
    options: dict[str, Any]  # RuntimeOptions fields
    fp8: str = "layerwise"  # the fp8 method it needs
    gpu_only: bool = True  # compilation takes minutes on 2 CPU cores; tests/render/test_fast_modes.py covers it there
    kernel: bool = False  # on the attention kernel auto picked
    offload_streams: bool | None = None  # group offload from the CPU, with or without CUDA streams


# In order of value: the goal's lossless modes, then fp8 with them, then what group offload costs.
FAST_FORWARDS: tuple[FastForward, ...] = (
    FastForward("compile + best kernel", {"compile": True}, kernel=True),
    FastForward("fp8 torchao + compile + best kernel", {"quantize": "fp8", "compile": True}, "torchao", kernel=True),
    FastForward("compile", {"compile": True}),
    FastForward("group offload + streams", {}, offload_streams=True),
    FastForward("group offload, no streams", {}, offload_streams=False),
    FastForward("fp8 layerwise (storage)", {"quantize": "fp8"}, gpu_only=False),
)


def time_forwards(size: CheckSize, repeats: int = 1, log: Path | None = None) -> list[ForwardResult]:
    """One expert forward at the check's size per attention backend, then per fast mode; each result
    is appended to ``log`` (JSON lines) as soon as it is measured, so a run cut short keeps them."""
    import torch
    from diffusers import WanTransformer3DModel

    from storymem_cli.config import RopeConfig
    from storymem_cli.models.runtime import RuntimeOptions
    from storymem_cli.models.speed import (
        apply_speed_options,
        fp8_method,
        resolve_attention_backend,
    )
    from storymem_cli.pipeline.layout import frame_positions, latent_frame_count
    from storymem_cli.pipeline.rope import rope_positions

    device, dtype = torch.device(size.device), getattr(torch, size.dtype)
    cuda = device.type == "cuda"

    def build() -> Any:
        torch.manual_seed(0)
        with torch.device(device):
            model = WanTransformer3DModel(**{**size.transformer, "num_layers": size.forward_layers, "in_channels": 36})
        return model.to(dtype).eval()

    shot = latent_frame_count(size.frames, 4)
    gen = torch.Generator(device).manual_seed(0)
    text = torch.randn(1, 512, size.transformer.get("text_dim", 4096), generator=gen, device=device, dtype=dtype)
    timestep = torch.tensor([900.0], device=device)

    def inputs(memory: int) -> tuple[Any, Any, int]:
        hidden = torch.randn(1, 36, memory + shot, size.height // 8, size.width // 8, generator=gen, device=device,
                             dtype=dtype)  # fmt: skip
        return hidden, frame_positions(memory, shot, RopeConfig()), (memory + shot) * (size.height // 16) * (size.width // 16)

    full = inputs(size.forward_memory_frames)
    tokens = full[2]

    def forward(model: Any, given: tuple[Any, Any, int] = full) -> None:
        hidden, positions, _ = given
        with torch.no_grad(), rope_positions([model], positions):
            model(hidden_states=hidden, timestep=timestep, encoder_hidden_states=text, return_dict=False)
        if cuda:
            torch.cuda.synchronize()

    def timed(call: Any) -> float:
        started = time.perf_counter()
        call()
        return time.perf_counter() - started

    results: list[ForwardResult] = []

    def record(result: ForwardResult) -> None:
        results.append(result)
        if log is not None:
            with log.open("a", encoding="utf-8") as f:
                f.write(json.dumps(asdict(result)) + "\n")
        shown = f"{result.seconds:.3f} s" if result.seconds else f"unavailable ({result.unavailable})"
        print(f"  forward {result.backend}: {shown}", file=sys.stderr, flush=True)

    def measure(label: str, model: Any, setup: Any, other_length: bool = False) -> None:
        try:
            if cuda:
                torch.cuda.synchronize()
            setup()
            weights = round(torch.cuda.memory_allocated() / GIB, 2) if cuda else None
            first = timed(lambda: forward(model))  # warm-up: kernels picked, memory pools filled, blocks compiled
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            seconds = sum(timed(lambda: forward(model)) for _ in range(repeats)) / repeats
            peak = round(torch.cuda.max_memory_allocated() / GIB, 2) if cuda else None
            result = ForwardResult(label, round(seconds, 3), peak, tokens, size.forward_layers, round(first, 3), weights)
            if other_length:  # the next shot's memory length: is it compiled again?
                short = inputs(0)
                result.other_length_first_s = round(timed(lambda: forward(model, short)), 3)
                result.other_length_s = round(timed(lambda: forward(model, short)), 3)
        except Exception as err:  # noqa: BLE001  not installed, or not for this device / dtype
            first_line = (str(err).strip().splitlines() or [""])[0][:160]
            result = ForwardResult(label, unavailable=f"{type(err).__name__}: {first_line}")
        record(result)

    model = build()
    measure("sdpa (default)", model, lambda: model.set_attention_backend("native"))
    auto = resolve_attention_backend("auto", device, dtype)  # measured on a probe once per device (attention_pick)
    record(ForwardResult(f"attention auto -> {auto}", unavailable="the kernel auto picked; see the kernels part"))
    for fast in FAST_FORWARDS:
        if fast.gpu_only and not cuda:
            record(ForwardResult(fast.label, unavailable="timed on a GPU only"))
            continue
        if fast.fp8 == "torchao" and fp8_method(device) != "torchao":
            record(ForwardResult(fast.label, unavailable="torchao missing or no fp8 tensor cores here (speed.fp8_method)"))
            continue
        if fast.kernel and auto == "native":
            record(ForwardResult(fast.label, unavailable="auto picked SDPA here: the same as without the kernel"))
            continue
        del model
        _free()
        model = build()
        runtime = RuntimeOptions(**fast.options)

        def setup(m: Any = model, r: Any = runtime, f: FastForward = fast) -> None:
            apply_speed_options(m, r, dtype, f.fp8)
            m.set_attention_backend(auto if f.kernel else "native")
            if f.offload_streams is not None:
                offload_from_host(m, device, f.offload_streams)

        measure(fast.label, model, setup, other_length=runtime.compile)
    del model
    _free()
    return results


def offload_from_host(model: Any, device: Any, streams: bool) -> None:
    """The expert's weights to the CPU, then block by block onto the GPU as ``--offload group`` does
    (models/offload.py; with streams only when the pinned copies fit in RAM, as there)."""
    import torch
    from diffusers.hooks import apply_group_offloading

    from storymem_cli.models.offload import decide_streams
    from storymem_cli.models.residency import host_memory, module_bytes

    if streams:
        decision = decide_streams(device.type, module_bytes(model), host_memory())
        if not decision.use_stream:
            raise RuntimeError(f"no streams: {decision.reason}")
    model.to("cpu")
    torch.cuda.empty_cache()
    apply_group_offloading(model, onload_device=device, offload_device=torch.device("cpu"), offload_type="block_level",
                           num_blocks_per_group=1, use_stream=streams, record_stream=streams)  # fmt: skip


# -- 2b. attention kernels at the real shape ----------------------------------------------------------------


def time_kernels(size: CheckSize) -> list[dict[str, Any]]:
    """Each candidate of --attention auto at the check's self-attention shape: seconds, TFLOP/s and the
    relative RMS error against fp32 on a slice of the queries (models/attention_pick.measure)."""
    import torch

    from storymem_cli.models.attention_pick import measure
    from storymem_cli.pipeline.layout import latent_frame_count

    device, dtype = torch.device(size.device), getattr(torch, size.dtype)
    heads = size.transformer["num_attention_heads"]
    head_dim = size.transformer["attention_head_dim"]
    frames = latent_frame_count(size.frames, 4) + size.forward_memory_frames
    tokens = frames * (size.height // 16) * (size.width // 16)
    results = []
    for backend in KERNEL_BACKENDS:
        found = measure(backend, device, dtype, shape=(1, tokens, heads, head_dim))
        flops = 4 * tokens * tokens * heads * head_dim  # scores and the weighted sum, one self-attention
        row = {**asdict(found), "tokens": tokens,
               "tflops": None if not found.seconds else round(flops / found.seconds / 1e12, 1)}  # fmt: skip
        results.append(row)
        shown = f"{found.seconds:.4f} s, error {found.error:.1e}" if found.seconds else f"unavailable ({found.unavailable})"
        print(f"  kernel {backend}: {shown}", file=sys.stderr, flush=True)
        _free()
    return results


# -- 4. projections to the whole A14B story ------------------------------------------------------------


def story_work() -> float:
    """A paper-setting story's denoising FLOPs as a fraction of every shot at the full memory (render.story_cost)."""
    from storymem_cli.render.story_cost import memory_growth, shot_tokens, story_factor

    tokens = [shot_tokens(832, 480, 81, frames) for frames in memory_growth(STORY_SHOTS)]
    return story_factor(tokens, shot_tokens(832, 480, 81, MEMORY_FRAMES))


def project(
    renders: list[ModeResult], forwards: list[ForwardResult], size: CheckSize, small: dict[str, int],
    full: dict[str, int],
) -> dict[str, Any]:
    """Computed, not measured: minutes and peak GB of a 10-shot, 40-step A14B story per offload mode.

    Time per shot = 80 full-expert forwards (the SDPA forward timed above, scaled from its layer count
    to 40) + what the render spent outside the transformer (VAE, text encoder, memory, writing: the
    measured shot time minus its own forwards) + the offload mode's extra time over ``offload none``,
    scaled from the render's layer count to 40 (it moves weights, and the weights grow with layers).
    Peak = the render's measured peak - the weights it held at once + what A14B holds at once:
    none: both experts + the text encoder; model: one expert (the largest component); group: one
    block and the expert's non-block layers. Activations are the same at full width (same tokens).
    """
    bytes_per = 2 if size.dtype in ("bfloat16", "float16") else 4
    sdpa = next((f for f in forwards if f.backend == "sdpa (default)" and f.seconds), None)
    base = next((r for r in renders if r.mode == "offload none" and r.finished), None)
    if sdpa is None:
        return {"note": "nothing to project from: the SDPA forward is missing"}
    render_layers = size.transformer["num_layers"]
    per_layer = sdpa.seconds / sdpa.layers
    # The forwards were timed at the full memory (10 frames); a story's shots have 0, 3, 6, 9, then 10.
    work = story_work()
    forward_full = per_layer * A14B_LAYERS
    outside = None
    if base is not None:
        own_forwards = size.steps * FORWARDS_PER_STEP * render_layers * per_layer  # upper bound: shots w/o memory are shorter
        outside = max(0.0, _mean(base.shot_s) - own_forwards)

    def resident(counts: dict[str, int], mode: str) -> float:
        nonblock = counts["expert"] - counts["expert_block"] * counts["expert_layers"]  # embeddings, head
        if mode == "none":
            return (2 * counts["expert"] + counts["text_encoder"]) * bytes_per
        if mode == "model":
            return max(counts["expert"], counts["text_encoder"]) * bytes_per
        return (counts["expert_block"] + nonblock) * bytes_per

    rows = {}
    for render in renders:  # the plain offload modes (the fast modes' renders check that they run, at 2 layers)
        if not render.finished or base is None or any(a in render.args for a in FAST_ARGS):
            continue
        mode = render.args[render.args.index("--offload") + 1]
        extra = max(0.0, _mean(render.shot_s) - _mean(base.shot_s)) * A14B_LAYERS / render_layers
        shot_s = PAPER_STEPS * FORWARDS_PER_STEP * forward_full * work + (outside or 0.0) + extra
        row: dict[str, Any] = {"minutes_per_story": round(STORY_SHOTS * shot_s / 60, 1)}
        if render.peak_gib is not None and small:
            grown = (resident(full, mode) - resident(small, mode)) / GIB
            row["peak_gib"] = round(render.peak_gib + grown, 1)
        rows[render.mode] = row

    def minutes(forward_s: float, steps: int = PAPER_STEPS, per_step: int = FORWARDS_PER_STEP) -> float:
        return round(STORY_SHOTS * (steps * per_step * forward_s * work + (outside or 0.0)) / 60, 1)

    fast = {f.backend: minutes(f.seconds / f.layers * A14B_LAYERS) for f in forwards if f.seconds}
    # A step-distilled LoRA (Wan2.2 Lightning: 4 steps, guidance 1, so one pass per step) on SDPA.
    fast["sdpa + --guidance 1, 4 steps (distilled LoRA)"] = minutes(forward_full, steps=4, per_step=1)
    # MagCache at the authors' settings on top of every forward without offloading: the share of the
    # story's forward work it skips comes from the published curves (models/magcache.py), not measured.
    from storymem_cli.models.magcache import story_skipped_work

    skipped = {experts: story_skipped_work(0.06, 2, experts) for experts in ("auto", "both")}
    magcache = {
        f"{f.backend} + magcache ({'authors' if experts == 'auto' else 'both experts'}, {share:.0%} skipped)":
            minutes(f.seconds / f.layers * A14B_LAYERS * (1 - share))
        for f in forwards if f.seconds and "offload" not in f.backend for experts, share in skipped.items()
    }  # fmt: skip
    return {
        "computed": True,
        "story": f"{STORY_SHOTS} shots x {PAPER_STEPS} steps x {FORWARDS_PER_STEP} forwards, memory growing by 3 "
                 f"keyframes a shot up to 10: {work:.3f} of every shot at 48,360 tokens",
        "story_work": round(work, 4),
        "forward_s_40_layers": round(forward_full, 2),
        "outside_transformer_s_per_shot": None if outside is None else round(outside, 2),
        "per_offload_mode": rows,
        "minutes_per_story_by_forward": fast,
        "minutes_per_story_with_magcache": {key: round(value, 1) for key, value in magcache.items()},
        "goal_minutes": 45,
        **({} if outside is not None else {"note": "no offload-none render: minutes count the transformer only"}),
    }


# -- the check ------------------------------------------------------------------------------------------


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _free() -> None:
    gc.collect()
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def table(report: dict[str, Any]) -> str:
    lines = [f"device check on {report['device_name']} ({report['size']})", ""]
    lines.append(f"{'render mode':<30} {'result':<10} {'s/shot':>7} {'peak GiB':>9}  shots")
    for r in report["renders"]:
        result = "ok" if r["finished"] else ("skipped" if r["skipped"] else "FAILED")
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
        per_shot = f"{_mean(r['shot_s']):.1f}" if r["shot_s"] else "-"
        lines.append(f"{r['mode']:<30} {result:<10} {per_shot:>7} {peak:>9}  {' '.join(r['modes'])}")
        if r["error"] or r["skipped"]:
            lines.append(f"    {r['error'] or r['skipped']}")
    if report.get("kernels"):
        lines += ["", f"{'attention kernel':<14} {'s':>8} {'TFLOP/s':>8} {'error vs fp32':>13}  (tokens)"]
        for k in report["kernels"]:
            if k["unavailable"]:
                lines.append(f"{k['backend']:<14} {'-':>8} {'-':>8} {'-':>13}  {k['unavailable'][:90]}")
            else:
                lines.append(f"{k['backend']:<14} {k['seconds']:>8.4f} {k['tflops'] or 0:>8.1f} {k['error']:>13.2e}  ({k['tokens']:,})")
    cached = [r for r in report["renders"] if any(r["forwards_skipped"])]
    for r in cached:
        lines.append(f"{r['mode']}: forwards skipped per shot {r['forwards_skipped']} of {r['forwards']}, "
                     f"graphs compiled during the render {r['graphs_compiled']}")  # fmt: skip
    lines += ["", f"{'forward (backend, mode)':<26} {'forward s':>9} {'peak GiB':>9} {'weights':>8}  "
              "(layers, tokens, first call s; compiled: no-memory first/next s)"]
    for f in report["forwards"]:
        if f["unavailable"]:
            lines.append(f"{f['backend']:<26} {'-':>9} {'-':>9} {'-':>8}  {f['unavailable']}")
            continue
        peak, weights = (("-" if v is None else f"{v:.1f}") for v in (f["peak_gib"], f["weights_gib"]))
        shape = "" if f["other_length_first_s"] is None else f"; {f['other_length_first_s']:.1f}/{f['other_length_s']:.1f}"
        lines.append(f"{f['backend']:<26} {f['seconds']:>9.3f} {peak:>9} {weights:>8}  ({f['layers']}, {f['tokens']:,}, "
                     f"{f['first_call_s']:.1f}{shape})")  # fmt: skip
    projection = report["projection"]
    lines += ["", f"projected A14B story (COMPUTED, not measured): {projection.get('story', '')}"]
    for mode, row in projection.get("per_offload_mode", {}).items():
        peak = f"{row['peak_gib']:.1f} GiB" if "peak_gib" in row else "peak n/a"
        lines.append(f"  {mode:<30} {row['minutes_per_story']:>7.1f} min  {peak}")
    for variant, minutes in projection.get("minutes_per_story_by_forward", {}).items():
        lines.append(f"  {variant:<46} {minutes:>7.1f} min" + ("" if "offload" in variant else " (offload none)"))
    for variant, minutes in projection.get("minutes_per_story_with_magcache", {}).items():
        lines.append(f"  {variant:<70} {minutes:>7.1f} min")
    if "note" in projection:
        lines.append(f"  {projection['note']}")
    lines.append(f"\ntotal {report['total_s']:.0f} s")
    return "\n".join(lines)


def run_check(size: CheckSize, out: Path, parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    """The check; gpu_check.json is rewritten after each part, so a run cut short keeps what it measured."""
    import torch

    from storymem_cli.models.story_model import installed_versions

    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    cuda = size.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: run with --tiny for the CPU rehearsal")
    report: dict[str, Any] = {
        "size": "tiny (CPU rehearsal)" if not cuda else "A14B widths",
        "device_name": torch.cuda.get_device_name(0) if cuda else "cpu",
        "versions": {"torch": torch.__version__,
                     **installed_versions("diffusers", "transformers", "peft", "accelerate", "torchao")},
        "check": asdict(size),
        "params": {"a14b": full_a14b_counts()},
        "renders": [],
        "forwards": [],
    }

    def save() -> None:
        renders = [ModeResult(**r) for r in report["renders"]]
        forwards = [ForwardResult(**f) for f in report["forwards"]]
        report["projection"] = project(renders, forwards, size, report["params"].get("check_model"), report["params"]["a14b"])
        report["total_s"] = round(time.perf_counter() - started, 1)
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    report["kernels"] = []
    if "kernels" in parts:
        report["kernels"] = time_kernels(size)
        save()
    if "forwards" in parts:
        log = out / "forwards.jsonl"
        log.unlink(missing_ok=True)
        report["forwards"] = [asdict(f) for f in time_forwards(size, log=log)]
        _free()
        save()
    if "renders" in parts:
        built = time.perf_counter()
        report["params"]["check_model"] = build_model_folder(size, out / "model")
        report["model_build_s"] = round(time.perf_counter() - built, 1)
        scripts = {True: write_story(out / "story-ref", size, True), False: write_story(out / "story", size, False)}
        for name, extra, with_reference in MODES:
            if time.perf_counter() - built > size.budget_s:
                result = ModeResult(name, list(extra), skipped=f"time budget of {size.budget_s:.0f} s spent")
            else:
                result = render_mode(name, extra, scripts[with_reference], out / "model", out, size)
                print(f"[{time.perf_counter() - started:6.1f} s] {name}: {'ok' if result.finished else 'not finished'}",
                      file=sys.stderr, flush=True)  # fmt: skip
            report["renders"].append(asdict(result))
            save()
    save()
    return report


def merge_reports(paths: list[Path], out: Path | None) -> dict[str, Any]:
    """One report from several runs' parts (gpu_check.json files, or a forwards.jsonl left by a run cut
    short): the renders and forwards of each, in the order given."""
    def read(path: Path) -> dict[str, Any]:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":  # the forwards log of a run cut short before its gpu_check.json
            return {"renders": [], "forwards": [json.loads(line) for line in text.splitlines() if line], "params": {},
                    "total_s": 0.0}  # fmt: skip
        return json.loads(text)

    reports = [read(path) for path in paths]
    full = [rep for rep in reports if "check" in rep]
    if not full:
        raise SystemExit("--merge needs at least one gpu_check.json (a forwards.jsonl alone has no check size)")
    report = {**full[0], "merged_from": [str(path) for path in paths]}
    report["renders"] = [r for rep in reports for r in rep["renders"]]
    report["forwards"] = [f for rep in reports for f in rep["forwards"]]
    report["kernels"] = [k for rep in reports for k in rep.get("kernels", [])]
    report["params"] = {k: v for rep in reports for k, v in rep["params"].items()}
    report["total_s"] = sum(rep["total_s"] for rep in reports)
    size = CheckSize(**report["check"])
    report["projection"] = project([ModeResult(**r) for r in report["renders"]],
                                   [ForwardResult(**f) for f in report["forwards"]], size,
                                   report["params"].get("check_model"), report["params"]["a14b"])  # fmt: skip
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(table(report))
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny widths on the CPU (seconds): the rehearsal a test runs")
    ap.add_argument("--out", type=Path, default=None, help="folder for the model, runs and gpu_check.json "
                    "(default: $OUT if set, else a temporary folder)")  # fmt: skip
    ap.add_argument("--budget-s", type=float, default=None, help="skip render modes once this much time is spent on them")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"which parts to run, comma-separated (default: {','.join(PARTS)})")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                    help="no check: join the parts of earlier runs' gpu_check.json files (e.g. forwards from one device "
                    "call, renders from another), project, print the table and write the joined report to --out")  # fmt: skip
    args = ap.parse_args(argv)
    if args.merge:
        return merge_reports(args.merge, args.out)
    parts = tuple(part.strip() for part in args.parts.split(","))
    if unknown := set(parts) - set(PARTS):
        ap.error(f"--parts: unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    size = tiny_size() if args.tiny else full_size()
    if args.budget_s is not None:
        size = CheckSize(**{**asdict(size), "budget_s": args.budget_s})
    out = args.out or (Path(os.environ["OUT"]) / "gpu_check" if os.environ.get("OUT") else None)
    with contextlib.ExitStack() as stack:
        if out is None:
            out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu_check-")))
        report = run_check(size, out, parts)
        print(table(report))
        print(f"\nJSON: {out / 'gpu_check.json'}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
