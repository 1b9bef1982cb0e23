"""The settings fingerprint of a few settings, pinned as literals.

Every finished shot in every user's run folder carries a fingerprint built on this hash: if it
changed for the same options, every one of those shots would be rendered again on the next run.
The digests were computed with the code as it was before the options became one nested model
(issue 24, format 1 of run.json); a refactor of the settings must keep them.
"""

from __future__ import annotations

import pytest

from storymem_cli.config import MemoryConfig, VideoConfig
from storymem_cli.models.runtime import RuntimeOptions
from storymem_cli.render.settings import RenderOptions, RenderSettings, StyleLora, resolve_settings


def settings(auto_dtype=None, **options):
    return resolve_settings(
        RenderOptions(**options), model_name="tiny", video=VideoConfig(width=64, height=32, frames=9), steps=2,
        memory=MemoryConfig(aesthetic="none"), embedder="tiny", auto_dtype=auto_dtype,
    )  # fmt: skip


DEFAULT = "c6e3f17edfe5dd239e64fe8c3887be96fa9cecd4a81f514df2be2e149a3e1cb6"  # pre-refactor value
PINNED = {
    "default": ({}, DEFAULT),
    # Hardware and scheduling only: the default's hash (not in the fingerprint).
    "hardware": (
        {"runtime": RuntimeOptions(offload="group", device="cuda:1", attention_backend="flash", vae_tiling=True,
                                   compile=True)},
        DEFAULT,
    ),
    # An explicit dtype equal to what auto picks here is auto.
    "dtype as auto": ({"runtime": RuntimeOptions(dtype="float32"), "auto_dtype": "float32"}, DEFAULT),
    "pixels": (
        {"seed": 7, "steps": 4, "guidance": 1.0, "guidance_2": 2.5, "upscale": 2, "keyframes": "first-frame",
         "lora": "x.safetensors", "style_loras": (StyleLora(path="s.safetensors", strength=0.8),),
         "continuation": "mm2v", "use_memory": False,
         "runtime": RuntimeOptions(dtype="bfloat16", cache="first-block", cache_threshold=0.1, quantize="fp8")},
        "96f340c62c8eb253b677e96730f38c6b75155ba8925a2ae0248ec4fb9e40de0d",  # cache revision 2 (issue 30)
    ),  # fmt: skip
    "taylorseer": (
        {"runtime": RuntimeOptions(cache="taylorseer", cache_interval=3)},
        "7b9a36e207b66de3a44a70188d2f6a3fed0281c567cf53e29a5b80b191f1e0ea",  # cache revision 2 (issue 30)
    ),
}
# The pre-refactor values of the cache settings: what they were before the caches' revision 2.
BEFORE_CACHE_REVISION = {
    "pixels": "5c78b3ae4ad42f8dc0c7463179a3a884da267038fc6591e0cfdce218854ca34b",
    "taylorseer": "e87d517aa99d04692e38b679d30810574d644ecd892905a5856400228a230e5e",
}


@pytest.mark.parametrize("name", list(PINNED))
def test_the_fingerprint_of_the_same_options_never_changes(name):
    options, expected = PINNED[name]
    assert settings(**options).fingerprint() == expected


@pytest.mark.parametrize("name", list(BEFORE_CACHE_REVISION))
def test_the_cache_revision_is_all_that_changed_the_cached_fingerprints(name, monkeypatch):
    # Shots of the earlier cache implementations are rendered again; nothing else about these settings moved.
    monkeypatch.setattr("storymem_cli.render.settings.CACHE_REVISION", {})
    assert settings(**PINNED[name][0]).fingerprint() == BEFORE_CACHE_REVISION[name]


def test_runtime_options_and_settings_share_no_name():
    # The fingerprint hashes both in one flat layer (run.json format 1's): a shared name would hide one.
    assert set(RuntimeOptions.model_fields).isdisjoint(RenderSettings.model_fields)


def test_a_style_lora_on_one_expert_is_another_fingerprint():
    both = settings(style_loras=(StyleLora(path="s.safetensors", strength=0.8),)).fingerprint()
    high = settings(style_loras=(StyleLora(path="s.safetensors", strength=0.8, expert="high"),)).fingerprint()
    low = settings(style_loras=(StyleLora(path="s.safetensors", strength=0.8, expert="low"),)).fingerprint()
    assert len({both, high, low}) == 3
