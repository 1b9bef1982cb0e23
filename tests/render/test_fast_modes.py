"""Fast modes (issue 24): each renders end to end through `storymem render`, is recorded in
run.json, and does nothing at all when it is off."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.config import MemoryConfig, VideoConfig
from storymem_cli.models.registry import (
    RuntimeOptions,
    load_story_model,
    resolve_preset,
)
from storymem_cli.pipeline.request import ShotRequest
from storymem_cli.render.settings import RenderOptions, resolve_settings

from .conftest import small_story, write_script

MODES = {
    "attention auto": (["--attention", "auto"], lambda m, s: m["attention_backend"] not in (None, "auto")),
    "first-block cache": (["--cache", "first-block", "--cache-threshold", "0.5"],
                          lambda m, s: m["cache"]["cache"] == "first-block" and s["runtime"]["cache_threshold"] == 0.5),
    "taylorseer cache": (["--cache", "taylorseer", "--cache-interval", "2"],
                         lambda m, s: m["cache"]["cache"] == "taylorseer" and s["runtime"]["cache_interval"] == 2),
    "magcache": (["--cache", "magcache", "--magcache-threshold", "0.2"],
                 lambda m, s: m["cache"]["cache"] == "magcache" and s["runtime"]["magcache_threshold"] == 0.2
                 and "wan2.2-i2v-a14b" in m["cache"]["curves"]["m2v"]["source"]),
    "fp8 storage": (["--quantize", "fp8"], lambda m, s: m["quantize"] == "fp8" and m["quantize_method"] == "layerwise"),
    "guidance 1": (["--guidance", "1"], lambda m, s: s["guidance"] == 1.0),
}  # fmt: skip


@pytest.mark.parametrize("model", ["tiny", "toy"])
@pytest.mark.parametrize("mode", list(MODES))
def test_each_fast_mode_renders_and_is_recorded(tmp_path, model, mode):
    options, recorded = MODES[mode]
    script = write_script(tmp_path, "story.json", small_story("Fast", shots=2))
    if model == "toy":  # the toy model's own caption grammar, so no warning gets in the way
        story = json.loads(script.read_text())
        story["scenes"][0]["video_prompts"] = ["a red circle hops to the left on the beach",
                                               "the hero walks to the right in the snow"]  # fmt: skip
        script.write_text(json.dumps(story))
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["render", str(script), "-o", str(run), "--model", model, "--device", "cpu",
                                      "--steps", "3", *options])  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((run / "run.json").read_text())
    assert len(record["shots"]) == 2 and (run / "story.mp4").is_file()
    assert recorded(record["model"], record["settings"])


def test_compile_renders_through_the_cli(tmp_path):
    """On tiny, the A14B architecture (toy is the same diffusers class, smaller): inductor's C++ build
    takes ~25 s on 2 cores with a cold cache, as in CI, so one model."""
    script = write_script(tmp_path, "story.json", small_story("Compiled", shots=1))
    result = CliRunner().invoke(app, ["render", str(script), "-o", str(tmp_path / "run"), "--model", "tiny",
                                      "--device", "cpu", "--steps", "1", "--compile"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["model"]["compile"] is True


def _request(**kw) -> ShotRequest:
    from storymem_cli.models.presets import TINY

    base = {"mode": "m2v", "prompt": "a lighthouse at dusk", "width": TINY.video.width, "height": TINY.video.height,
            "frames": TINY.video.frames, "steps": 6, "seed": 3, "memory": [np.full((48, 64, 3), 90, np.uint8)]}  # fmt: skip
    return ShotRequest(**{**base, **kw})


def test_options_off_install_nothing_and_change_no_pixel(monkeypatch):
    """The default path is the one before the fast modes: no hook, no compiled block, no cast, and
    the same frames as a model on which the speed options are never applied at all."""
    from storymem_cli.models import speed

    model = load_story_model(resolve_preset("tiny"), RuntimeOptions(device="cpu"))
    frames = model.generate(_request())
    pipe = model.pipeline("m2v")
    for transformer in (pipe.transformer, pipe.transformer_2):
        assert not transformer.is_cache_enabled
        assert all(block._compiled_call_impl is None for block in transformer.blocks)
        assert transformer.blocks[0].attn1.to_q.weight.dtype == torch.float32
        assert not getattr(getattr(transformer, "_diffusers_hook", None), "hooks", {})  # no hook of any kind
    monkeypatch.setattr(speed, "apply_speed_options", lambda *a, **k: pytest.fail("applied"))
    monkeypatch.setattr(speed, "reset_step_cache", lambda *a, **k: None)
    untouched = load_story_model(resolve_preset("tiny"), RuntimeOptions(device="cpu"))
    monkeypatch.setattr(untouched, "_apply_runtime", lambda pipe, transformers: pipe.to("cpu"))
    assert np.array_equal(frames, untouched.generate(_request()))


@pytest.mark.parametrize("cache", [{"cache": "first-block", "cache_threshold": 1.0},
                                   {"cache": "taylorseer", "cache_interval": 2}], ids=["first-block", "taylorseer"])
def test_step_cache_skips_work_with_memory_frames_in_the_sequence(cache):
    """Each cache answers some of the last block's feed-forward calls with M + T frames in the
    sequence, and the shot still comes out whole. (first-block compares the first block's residual
    on the shot's T frames; TaylorSeer skips the blocks between full steps and predicts the output.)"""

    def ffn_calls(runtime: RuntimeOptions) -> tuple[int, np.ndarray]:
        model = load_story_model(resolve_preset("tiny"), runtime)
        pipe = model.pipeline("m2v")
        calls = [0]
        # inside the feed-forward: a hook on a module a cache answers for would count its answers too
        hooks = [t.blocks[-1].ffn.net[0].register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
                 for t in (pipe.transformer, pipe.transformer_2)]  # fmt: skip
        frames = model.generate(_request(memory=[np.full((48, 64, 3), v, np.uint8) for v in (40, 90, 200)]))
        for hook in hooks:
            hook.remove()
        return calls[0], frames

    plain, plain_frames = ffn_calls(RuntimeOptions(device="cpu"))
    cached, cached_frames = ffn_calls(RuntimeOptions(device="cpu", **cache))
    assert plain == 6 * 2  # 6 steps, guidance on: two passes each
    assert 0 < cached < plain
    assert cached_frames.shape == plain_frames.shape and not np.array_equal(cached_frames, plain_frames)


def test_fingerprint_has_what_changes_pixels():
    def fingerprint(**options):
        return resolve_settings(RenderOptions(runtime=RuntimeOptions(**options)), model_name="tiny", video=VideoConfig(), steps=2,
                                memory=MemoryConfig(aesthetic="none"), embedder="tiny").fingerprint()  # fmt: skip

    base = fingerprint()
    assert fingerprint(compile=True) == base and fingerprint(attention_backend="auto") == base
    assert fingerprint(magcache_calibrate="curve.json") == base  # it only measures
    changed = [fingerprint(cache="first-block"), fingerprint(cache="taylorseer"), fingerprint(quantize="fp8"),
               fingerprint(cache="magcache"), fingerprint(cache="magcache", magcache_threshold=0.1)]  # fmt: skip
    assert base not in changed and len(set(changed)) == 5


def test_fp8_runs_on_torchao_only_where_fp8_matmuls_exist(monkeypatch):
    from storymem_cli.models import speed

    assert speed.fp8_method(torch.device("cpu")) == "layerwise"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))  # an H100 / H200
    assert speed.fp8_method(torch.device("cuda")) == "torchao"
    assert speed.fp8_method(torch.device("cuda"), offload="group") == "layerwise"  # param.data swaps: see fp8_method
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))  # an A100: no fp8 tensor cores
    assert speed.fp8_method(torch.device("cuda")) == "layerwise"


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_fp8_outside_bfloat16_stores_fp8_and_says_why(monkeypatch, dtype):
    """torchao's per-row fp8 asserts bfloat16 weights: an AssertionError in float16 / float32 on the GPU
    that has fp8 matmuls, so there the weights are stored in fp8 (layerwise), with a message."""
    from storymem_cli.models import speed

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))  # an H100 / H200
    assert speed.fp8_method(torch.device("cuda"), dtype=torch.bfloat16) == "torchao"
    name = str(dtype).removeprefix("torch.")
    with pytest.warns(UserWarning, match=f"--dtype {name}.*stored in float8.*need --dtype bfloat16"):
        assert speed.fp8_method(torch.device("cuda"), dtype=dtype) == "layerwise"


def test_torchao_quantises_the_block_linears_and_nothing_else():
    """The torchao path on the CPU, with torchao's weight-only fp8 (its fp8 matmuls need a Hopper GPU;
    benchmarks/gpu_check.py times them there): every linear layer inside a block is quantised, the
    embeddings and the output head are not, and the output stays close."""
    from torchao.quantization import Float8WeightOnlyConfig

    from storymem_cli.models.speed import quantize_blocks_torchao

    model = load_story_model(resolve_preset("tiny"), RuntimeOptions(device="cpu"))
    expert = model.pipeline("m2v").transformer
    linears = {name for name, m in expert.named_modules() if isinstance(m, torch.nn.Linear)}
    in_blocks = {name for name in linears if name.startswith("blocks.")}
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(1, expert.config.in_channels, 3, 6, 8, generator=gen)
    text = torch.randn(1, 8, expert.config.text_dim, generator=gen)
    with torch.no_grad():
        before = expert(hidden_states=hidden, timestep=torch.tensor([500.0]), encoder_hidden_states=text)[0]
        assert quantize_blocks_torchao(expert, Float8WeightOnlyConfig()) == len(in_blocks) > 0
        after = expert(hidden_states=hidden, timestep=torch.tensor([500.0]), encoder_hidden_states=text)[0]
    quantised = {name for name in linears if type(expert.get_submodule(name).weight).__name__ != "Parameter"}
    assert quantised == in_blocks and linears - in_blocks  # the head and embeddings stay in full precision
    error = (after - before).abs().max() / before.abs().max()
    assert 0 < error < 0.1  # fp8 rounding moves the output, a little
