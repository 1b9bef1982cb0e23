"""--attention auto (issue 31): the choice among measured kernels, with fake kernels and fake timings."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from storymem_cli.errors import InvalidInputError
from storymem_cli.models import attention_pick
from storymem_cli.models.attention_pick import Measurement, choose, pick_backend

SDPA = Measurement("native", seconds=1.0, error=0.004)


def test_the_fastest_kernel_within_the_error_bound_wins():
    measured = [Measurement("_flash_3", unavailable="not installed"),
                Measurement("flash_4_hub", seconds=0.7, error=0.005),
                Measurement("sage_hub", seconds=0.5, error=0.03)]  # fmt: skip  # fastest, but lossy: 0.03 > 3 x 0.004
    backend, why = choose(measured, SDPA)
    assert backend == "flash_4_hub" and "0.7000 s vs SDPA 1.0000 s" in why


def test_sdpa_when_nothing_is_both_close_and_faster():
    assert choose([Measurement("flash_4_hub", seconds=1.2, error=0.004)], SDPA)[0] == "native"  # slower
    assert choose([Measurement("sage_hub", seconds=0.5, error=0.05)], SDPA)[0] == "native"  # too far off
    assert choose([], Measurement("native", unavailable="x"))[0] == "native"


def test_on_a_cpu_auto_is_sdpa_without_measuring():
    pick = pick_backend(torch.device("cpu"), torch.float32, measure_fn=lambda *a: pytest.fail("measured"))
    assert pick.backend == "native" and "cpu" in pick.why


def test_measured_once_per_device_and_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(attention_pick, "_PICKS", {})
    monkeypatch.setattr(attention_pick, "_cache_key", lambda device, dtype: "an H200")
    monkeypatch.setattr(attention_pick, "register_local_kernel", lambda backend: None)
    times = {"native": 1.0, "_flash_3": 0.9, "flash_4_hub": 0.6, "sage_hub": 0.4}
    errors = {"native": 0.004, "_flash_3": 0.004, "flash_4_hub": 0.006, "sage_hub": 0.04}
    calls = []

    def fake(backend, device, dtype):
        calls.append(backend)
        return Measurement(backend, seconds=times[backend], error=errors[backend])

    cache = tmp_path / "picks.json"
    gpu = torch.device("cuda")
    assert pick_backend(gpu, torch.bfloat16, fake, cache).backend == "flash_4_hub"
    assert calls == ["native", "_flash_3", "flash_4_hub", "sage_hub"]
    monkeypatch.setattr(attention_pick, "_PICKS", {})  # another process on the same device: read, not measured
    again = pick_backend(gpu, torch.bfloat16, lambda *a: pytest.fail("measured again"), cache)
    assert again.backend == "flash_4_hub" and "measured earlier" in again.why and len(again.measured) == 4


def test_a_fake_pypi_kernel_runs_through_diffusers_dispatch(monkeypatch):
    """A local function handed to a hub backend is what diffusers calls (no download); on the CPU the
    requirement check on the `kernels` package is what decides whether it may be used."""
    fake = types.ModuleType("flash_attn_fake")
    seen = []

    def flash_attn_func(q, k, v, softmax_scale=None, causal=False):
        seen.append(q.shape)
        out = torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2), None

    fake.flash_attn_func = flash_attn_func
    monkeypatch.setitem(sys.modules, "flash_attn_fake", fake)
    monkeypatch.setattr(attention_pick, "LOCAL_KERNELS", (attention_pick.LocalKernel("flash_4_hub", "flash_attn_fake",
                                                                                     "flash_attn_func", "fake"),))  # fmt: skip
    from diffusers.models import attention_dispatch as dispatch

    monkeypatch.setattr(dispatch, "_check_attention_backend_requirements", lambda backend: None)
    registry = dispatch._HUB_KERNELS_REGISTRY[dispatch.AttentionBackendName.FLASH_4_HUB]
    monkeypatch.setattr(registry, "kernel_fn", None)
    result = attention_pick.measure("flash_4_hub", torch.device("cpu"), torch.float32, shape=(1, 16, 2, 8))
    assert result.unavailable is None and result.error < 1e-5 and seen  # the fake ran, and equals SDPA


def test_a_named_kernel_that_is_not_installed_is_refused():
    from storymem_cli.models.speed import resolve_attention_backend

    with pytest.raises(InvalidInputError, match="--attention sage_hub"):
        resolve_attention_backend("sage_hub", torch.device("cpu"), torch.float32)
