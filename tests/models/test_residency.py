"""The keep-both rule for the T2V and M2V expert pairs (models/residency.py), without a render."""

from __future__ import annotations

import pytest
import torch

from storymem_cli.models import residency
from storymem_cli.models.registry import (
    RuntimeOptions,
    load_story_model,
    resolve_preset,
)
from storymem_cli.models.residency import (
    KEEP_MARGIN,
    PoolMemory,
    fits,
    host_memory,
    module_bytes,
    pool_of,
)

GIB = 1 << 30


def test_fits_leaves_the_margin():
    assert fits(needed=53 * GIB, free=70 * GIB, margin=17 * GIB)
    assert not fits(needed=53 * GIB, free=70 * GIB, margin=17 * GIB + 1)
    assert fits(needed=0, free=0, margin=0) and not fits(needed=1, free=0, margin=0)


def test_margin_is_the_measured_working_memory_plus_a_share_of_the_pool():
    assert PoolMemory(free=0, total=100 * GIB).margin() == int(KEEP_MARGIN * 100 * GIB)
    assert PoolMemory(free=0, total=100 * GIB, working=5 * GIB).margin() == 5 * GIB + int(KEEP_MARGIN * 100 * GIB)


def test_the_measured_working_memory_decides_at_a14b_sizes():
    """docs/models.md's numbers: an A14B expert is 26.6 GiB in bf16, the text encoder 10.6 GiB, an
    H200 139.8 GiB. Beside one pair, a second fits when the shots so far needed 5 GiB of activations,
    not when the 17 GB HPSv3 memory scorer also came onto the GPU; fp8 pairs fit beside it too."""
    total, pair, text = int(139.8 * GIB), int(2 * 26.6 * GIB), int(10.6 * GIB)
    for working, expected in ((5 * GIB, True), (5 * GIB + 17 * 10**9, False)):
        gpu = PoolMemory(free=total - pair - text, total=total, working=working)
        assert fits(pair, gpu.free, gpu.margin()) is expected
    fp8 = pair // 2
    gpu = PoolMemory(free=total - fp8 - text, total=total, working=5 * GIB + 17 * 10**9)
    assert fits(fp8, gpu.free, gpu.margin())


@pytest.mark.parametrize(
    ("device", "offload", "pool"),
    [("cpu", "none", "host"), ("cpu", "model", "host"), ("cuda", "none", "cuda"), ("cuda", "model", "host"),
     ("cuda", "group", "host"), ("mps", "none", None), ("mps", "group", "host")],
)  # fmt: skip
def test_the_pool_is_where_the_pair_waits_between_forwards(device, offload, pool):
    assert pool_of(device, offload) == pool


def test_host_memory_reads_meminfo_within_a_cgroup_limit(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       32000000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    assert host_memory(meminfo, cgroup) == PoolMemory(free=20000000 * 1024, total=32000000 * 1024)  # no limit files
    (cgroup / "memory.max").write_text("max\n")
    (cgroup / "memory.current").write_text("123\n")
    assert host_memory(meminfo, cgroup).free == 20000000 * 1024
    (cgroup / "memory.max").write_text(f"{8 * GIB}\n")
    (cgroup / "memory.current").write_text(f"{6 * GIB}\n")
    assert host_memory(meminfo, cgroup).free == 2 * GIB


def test_module_bytes_counts_parameters_and_buffers_as_stored():
    linear = torch.nn.Linear(4, 3)  # 12 + 3 float32
    linear.register_buffer("table", torch.zeros(5, dtype=torch.float16))
    assert module_bytes(linear) == 15 * 4 + 5 * 2
    assert module_bytes(linear, torch.nn.Linear(2, 2, bias=False).to(torch.float8_e4m3fn)) == 70 + 4


def test_model_offload_hooks_the_shared_parts_to_the_pipeline_that_runs(monkeypatch, tiny_request):
    """After each call diffusers re-hooks the pipeline that ran, the shared VAE too: switching back to
    the kept T2V pair must chain the VAE to the T2V low-noise expert, or the decode would run with the
    M2V one still on the GPU."""
    monkeypatch.setattr(residency, "host_memory", lambda: PoolMemory(free=1 << 50, total=1 << 50))
    model = load_story_model(resolve_preset("tiny"), RuntimeOptions(device="cpu", offload="model"))
    model.generate(tiny_request(mode="t2v"))
    model.generate(tiny_request(mode="m2v"))
    vae = model.shared["vae"]
    assert vae._hf_hook.prev_module_hook.model is model.pipeline("m2v").transformer_2
    t2v = model.pipeline("t2v")
    assert model.pair_loads == 2
    assert vae._hf_hook.prev_module_hook.model is t2v.transformer_2
    assert t2v.transformer._hf_hook.prev_module_hook.model is model.shared["text_encoder"]
