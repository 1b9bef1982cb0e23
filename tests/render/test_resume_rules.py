"""Which shots a re-run keeps, and the settings fingerprint: pure."""

from __future__ import annotations

from dataclasses import replace

import hashlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from storymem_cli.config import MemoryConfig, VideoConfig
from storymem_cli.errors import InvalidInputError
from storymem_cli.models.runtime import RuntimeOptions
from storymem_cli.render.plan import ShotPlan
from storymem_cli.render.resume import check_same_story, kept_prefix, shot_fingerprint
from storymem_cli.render.settings import RenderOptions, resolve_settings


def settings(**options):
    return resolve_settings(
        RenderOptions(**options), model_name="tiny", video=VideoConfig(width=64, height=32, frames=9), steps=2,
        memory=MemoryConfig(aesthetic="none"), embedder="tiny",
    )


def records(n):
    return [{"index": i, "status": "done", "fingerprint": f"fp{i}"} for i in range(n)]


def test_keeps_the_longest_matching_prefix():
    fps = ["fp0", "fp1", "fp2", "fp3"]
    present = lambda i: True
    assert kept_prefix(records(4), fps, present) == 4
    assert kept_prefix(records(2), fps, present) == 2
    assert kept_prefix(records(4), ["fp0", "fp1", "X", "fp3"], present) == 2
    assert kept_prefix(records(4), fps, lambda i: i != 1) == 1  # a missing clip is rendered again
    assert kept_prefix([], fps, present) == 0


def test_a_record_out_of_order_or_not_done_stops_the_prefix():
    recs = records(3)
    recs[1]["status"] = "rendering"
    assert kept_prefix(recs, ["fp0", "fp1", "fp2"], lambda i: True) == 1
    recs = records(3)
    recs[0]["index"] = 5
    assert kept_prefix(recs, ["fp0", "fp1", "fp2"], lambda i: True) == 0


def test_shot_fingerprint_changes_with_each_input():
    plan = ShotPlan(index=0, scene=1, shot_in_scene=1, prompt="p", mode="t2v", seed=1, cut=True)
    base = shot_fingerprint("s", "script", plan)
    assert base == shot_fingerprint("s", "script", plan)
    assert base != shot_fingerprint("s2", "script", plan)
    assert base != shot_fingerprint("s", "script2", plan)
    assert base != shot_fingerprint("s", "script", replace(plan, seed=2))
    assert base != shot_fingerprint("s", "script", replace(plan, mode="m2v"))
    assert base != shot_fingerprint("s", "script", plan, ["ref-hero-1234abcd"])
    assert shot_fingerprint("s", "script", plan, ["ref-a"]) != shot_fingerprint("s", "script", plan, ["ref-b"])


def test_mr2v_keeps_the_fingerprint_it_had_as_m2v():
    # Before run format 3 a first shot from references was recorded as m2v: its finished shots stay.
    plan = ShotPlan(index=0, scene=1, shot_in_scene=1, prompt="p", mode="mr2v", seed=1, cut=True)
    assert shot_fingerprint("s", "script", plan, ["ref-a"]) == shot_fingerprint("s", "script", replace(plan, mode="m2v"), ["ref-a"])


def test_settings_fingerprint_ignores_scheduling_and_hardware_only():
    base = settings()
    for change in [{"offload": "model"}, {"offload": "group"}, {"device": "cuda:1"}, {"attention_backend": "flash"},
                   {"vae_tiling": True}]:
        assert settings(runtime=change).fingerprint() == base.fingerprint(), change
    for change in [{"seed": 1}, {"steps": 3}, {"width": 128}, {"rope": "sequential"}, {"memory_size": 4},
                   {"continuation": "mm2v"}, {"use_memory": False}, {"lora": "x.safetensors"},
                   {"runtime": {"dtype": "bfloat16"}}, {"upscale": 2}, {"keyframes": "first-frame"}]:
        assert settings(**change).fingerprint() != base.fingerprint(), change


def test_settings_added_later_leave_the_fingerprint_unchanged_at_their_default():
    # The hash a run rendered before --upscale and --keyframes existed recorded for its shots.
    base = settings()
    payload = base.model_dump(mode="json", exclude={"upscale", "runtime"})  # flat, as run.json format 1 had it
    payload.update(base.runtime.model_dump(mode="json", exclude={"offload", "device", "attention_backend", "compile",
                                                                 "magcache_calibrate"}))  # fmt: skip
    del payload["memory"]["selection"]
    magcache = ("magcache_threshold", "magcache_k", "magcache_retention", "magcache_experts", "magcache_curve")
    for later in ("guidance", "guidance_2", "cache", "cache_threshold", "cache_interval", "quantize", "fuse_lora",
                  "scheduler", "flow_shift_t2v", "flow_shift_m2v", "retrieval", "describe_characters",
                  "memory_from", *magcache):  # fmt: skip
        del payload[later]  # added later still
    before = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    assert base.fingerprint() == before
    assert settings(upscale=1, keyframes="semantic").fingerprint() == before
    assert base.model_dump()["upscale"] == 1 and base.memory.selection == "semantic"  # still recorded


def test_a_dtype_equal_to_what_auto_picks_is_auto():
    def resolved(dtype, auto_dtype):
        return resolve_settings(
            RenderOptions(runtime=RuntimeOptions(dtype=dtype)), model_name="tiny", video=VideoConfig(width=64, height=32, frames=9), steps=2,
            memory=MemoryConfig(aesthetic="none"), embedder="tiny", auto_dtype=auto_dtype,
        )  # fmt: skip

    assert resolved("float32", "float32").runtime.dtype == "auto"
    assert resolved("float32", "float32").fingerprint() == resolved("auto", "float32").fingerprint()
    assert resolved("bfloat16", "float32").runtime.dtype == "bfloat16"  # not what auto picks here
    assert resolved("bfloat16", "bfloat16").fingerprint() == resolved("auto", "bfloat16").fingerprint()
    assert resolved("float32", None).runtime.dtype == "float32"  # nothing known about auto: as given


def test_upscale_and_keyframes_options_are_validated():
    assert settings(upscale=4).upscale == 4 and settings(keyframes="first-frame").memory.selection == "first-frame"
    for bad in ({"upscale": 0}, {"upscale": 17}, {"keyframes": "random"}):
        with pytest.raises(ValidationError):
            settings(**bad)


def test_options_override_preset_and_are_validated():
    s = settings(width=128, frames=17, steps=5, sink_size=1)
    assert (s.video.width, s.video.height, s.video.frames, s.steps) == (128, 32, 17, 5)
    assert s.memory.sink_size == 1 and s.memory.aesthetic == "none" and s.embedder == "tiny"
    assert settings(aesthetic="laion").memory.aesthetic == "laion" and settings().seed == 0


def test_every_option_reaches_the_settings():
    # A changed option that left run.json and the fingerprint untouched would be silently ignored.
    changed = {"model": "toy", "width": 128, "height": 64, "frames": 17, "steps": 3, "seed": 1,
               "continuation": "mm2v", "rope": "sequential", "rope_shift": 2.0, "memory_size": 4, "sink_size": 1,
               "keyframes_per_shot": 2, "keyframes": "first-frame", "aesthetic": "laion", "use_memory": False,
               "lora": "x.safetensors", "style_loras": [{"path": "s.safetensors"}], "upscale": 2, "guidance": 1.0,
               "guidance_2": 2.0, "scheduler": "euler", "flow_shift_t2v": 5.0, "flow_shift_m2v": 6.0,
               "retrieval": "paper", "describe_characters": True, "memory_from": "runs/part1"}  # fmt: skip
    runtime = {"offload": "model", "device": "cuda:1", "dtype": "bfloat16", "vae_tiling": True,
               "attention_backend": "flash", "fuse_lora": False, "cache": "first-block", "cache_threshold": 0.1,
               "cache_interval": 3, "compile": True, "quantize": "fp8", "magcache_threshold": 0.1, "magcache_k": 3,
               "magcache_retention": 0.2, "magcache_experts": "both", "magcache_curve": "c.json",
               "magcache_calibrate": "c.json"}  # fmt: skip
    assert set(changed) | {"runtime"} == set(RenderOptions.model_fields)
    assert set(runtime) == set(RuntimeOptions.model_fields)
    base = settings().model_dump()
    for name, value in changed.items():
        if name == "model":  # the user's name for it; resolve_settings records the resolved model_name
            continue
        assert settings(**{name: value}).model_dump() != base, name
    for name, value in runtime.items():
        assert settings(runtime={name: value}).model_dump() != base, name


def test_other_story_is_refused():
    check_same_story({"story_name": "A"}, "A", Path("out"))
    with pytest.raises(InvalidInputError, match="another story"):
        check_same_story({"story_name": "A"}, "B", Path("out"))


def test_guidance_overrides_are_per_expert_and_in_the_fingerprint_only_when_given():
    assert settings().guidance_per_expert() == (None, None)
    assert settings(guidance=1.0).guidance_per_expert() == (1.0, 1.0)
    assert settings(guidance=1.0, guidance_2=3.5).guidance_per_expert() == (1.0, 3.5)
    assert settings(guidance_2=2.0).guidance_per_expert() == (None, 2.0)
    base = settings().fingerprint()
    assert len({base, settings(guidance=1.0).fingerprint(), settings(guidance_2=1.0).fingerprint()}) == 3
    for bad in ({"guidance": 0.5}, {"guidance": float("nan")}, {"guidance_2": 31.0}):
        with pytest.raises(ValidationError):
            settings(**bad)
