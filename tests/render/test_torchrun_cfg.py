"""``torchrun --nproc-per-node 2 -m storymem_cli render --parallel cfg`` on the CPU (gloo), issue 31.

Rank 0 computes every conditional pass and rank 1 every unconditional one, exchanging predictions once
per step; the story equals a single process's within the Ulysses test's tolerance, and rank 0 alone
writes the run folder (rank_guard ends any other rank that touches it).
"""

from __future__ import annotations

import json
import os

from .conftest import HERON, write_script
from .test_torchrun import GUARD, assert_one_process_renders_the_same


def test_cfg_parallel_story_equals_one_process(tmp_path, torchrun, child_env, heron_one_process):
    script = write_script(tmp_path / "scripts", "heron.json", HERON)
    args = ["render", str(script), "-o", str(tmp_path / "run"), "--model", "tiny", "--device", "cpu", "--json"]
    run = tmp_path / "run"
    env = {"PYTHONPATH": os.pathsep.join([str(GUARD), child_env()["PYTHONPATH"]]), "STORYMEM_TEST_RUN_DIR": str(run)}
    done = torchrun(["-m", "storymem_cli", *args, "--parallel", "cfg"], **env)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((run / "run.json").read_text())
    assert record["model"]["parallel"] == {"world_size": 2, "cfg": 2, "ulysses": 1, "ring": 1,
                                           "backend": "context parallel (diffusers)"}  # fmt: skip
    assert [shot["forwards"] for shot in record["shots"]] == [8, 8, 8]  # rank 0's: both calls of 4 steps answered

    assert_one_process_renders_the_same(run, heron_one_process)
