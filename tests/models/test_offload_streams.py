"""--offload group with CUDA streams (issue 31): the decision, and the offload on the CPU without them."""

from __future__ import annotations

from storymem_cli.models.offload import decide_streams
from storymem_cli.models.registry import RuntimeOptions, load_story_model, resolve_preset
from storymem_cli.models.residency import PoolMemory

GIB = 2**30
A14B_PAIR_AND_TEXT = 68 * GIB


def test_streams_when_the_pinned_copies_fit_in_ram():
    decision = decide_streams("cuda", A14B_PAIR_AND_TEXT, PoolMemory(free=110 * GIB, total=128 * GIB))
    assert decision.use_stream and "68.0 GiB" in decision.reason


def test_no_streams_when_ram_is_short_or_unknown_or_no_cuda():
    short = decide_streams("cuda", A14B_PAIR_AND_TEXT, PoolMemory(free=70 * GIB, total=128 * GIB))
    assert not short.use_stream and "needs 68.0 GiB" in short.reason and "70.0 GiB is available" in short.reason
    assert not decide_streams("cuda", GIB, None).use_stream
    cpu = decide_streams("cpu", GIB, PoolMemory(free=100 * GIB, total=128 * GIB))
    assert not cpu.use_stream and "CUDA" in cpu.reason


def test_group_offload_on_the_cpu_records_why_no_streams():
    model = load_story_model(resolve_preset("tiny"), RuntimeOptions(device="cpu", offload="group"))
    model.pipeline("m2v")
    assert model.describe()["offload_streams"] == {"streams": False, "why": "streams need a CUDA device, not cpu"}
