"""diffusers' context parallelism on the tiny experts, 2 processes on the CPU (gloo): the story rope's
tables split with the tokens for every memory size M from 0 to 10 and both rope layouts (issue 25)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storymem_cli.errors import InvalidInputError
from storymem_cli.models import parallel

WORKER = Path(__file__).with_name("cp_forward_worker.py")
# Measured 0.0 on CPU: Ulysses computes each head on the whole sequence, the same sums as one process.
TOLERANCE = 1e-5


def run_worker(tmp_path: Path, torchrun, mode: str):
    out = tmp_path / f"{mode}.json"
    return torchrun([str(WORKER), str(out), mode]), out


def test_ulysses_over_two_processes_equals_one_process_for_every_memory_size(tmp_path, torchrun):
    proc, out = run_worker(tmp_path, torchrun, "ulysses")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results.pop("degrees") == "ParallelDegrees(ulysses=2, ring=1, cfg=1)"
    names = [f"{e}/{layout}/M={m}" for e in ("i2v_transformer", "i2v_transformer_2")
             for layout in ("negative", "sequential") for m in range(11)]  # fmt: skip
    assert sorted(results) == sorted(names)
    assert max(results.values()) <= TOLERANCE, {k: v for k, v in results.items() if v > TOLERANCE}


def test_ring_on_the_cpu_is_refused_with_the_reason():
    # Refused before any process group is needed: diffusers' native backend cannot do ring attention.
    from storymem_cli.models.tiny import build_tiny_components

    transformer = build_tiny_components()["i2v_transformer"]
    parallel.activate(2, "ring", "cpu")
    try:
        with pytest.raises(InvalidInputError, match=r"ring attention \(degree 2\) needs an attention backend"):
            parallel.enable_context_parallel(transformer)
    finally:
        parallel.deactivate()
    assert transformer._parallel_config is None
