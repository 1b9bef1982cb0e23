"""``torchrun --nproc-per-node 2 -m storymem_cli render`` on the CPU (gloo) with the tiny model (issue 25).

One story of 3 shots (T2V, MI2V with memory, M2V with memory). The first launch splits classifier-free
guidance over the two processes (``--parallel cfg``, issue 31: rank 0 computes every conditional pass,
rank 1 every unconditional one) and loses rank 1 when it is asked for shot 3. The command run again
without ``--parallel`` (Ulysses, the default: each forward's tokens split over the processes) resumes
at shot 3 and finishes: a run resumes under any parallel layout, as under any number of processes.
Throughout, a guard (rank_guard/sitecustomize.py) ends any rank > 0 that touches the run folder. The
frames equal a single-process render's within TOLERANCE: on this CPU they are identical, but Ulysses
runs the linear layers on half the tokens per process, which a BLAS may sum in another order.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from .conftest import HERON, write_script

GUARD = Path(__file__).with_name("rank_guard")
TOLERANCE = 2  # grey levels of 255, on the lossless tail frames

def tails(run: Path) -> list[np.ndarray]:
    record = json.loads((run / "run.json").read_text())
    return [np.load(run / shot["tail"])["frames"].astype(int) for shot in record["shots"]]


def assert_one_process_renders_the_same(run: Path, reference: Path) -> None:
    """``run`` has the seeds, modes, memory, fingerprints and files of ``reference`` (the same story
    rendered by one process), and its frames are within TOLERANCE."""
    record, expected = (json.loads((folder / "run.json").read_text()) for folder in (run, reference))
    for key in ("seed", "mode", "memory_ids", "keyframe_ids", "fingerprint"):
        assert [s[key] for s in record["shots"]] == [s[key] for s in expected["shots"]], key
    for got, want in zip(tails(run), tails(reference), strict=True):
        assert np.abs(got - want).max() <= TOLERANCE
    listing = sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.name != ".lock")
    assert listing == sorted(p.relative_to(reference).as_posix() for p in reference.rglob("*") if p.name != ".lock")


def test_torchrun_killed_rank_then_the_command_again_resumes_to_the_single_process_video(
    tmp_path, torchrun, child_env, heron_one_process
):
    script = write_script(tmp_path / "scripts", "heron.json", HERON)
    args = ["render", str(script), "-o", str(tmp_path / "run"), "--model", "tiny", "--device", "cpu", "--json"]
    run = tmp_path / "run"
    env = {
        "PYTHONPATH": os.pathsep.join([str(GUARD), child_env()["PYTHONPATH"]]),
        "STORYMEM_TEST_RUN_DIR": str(run),
    }  # the torchrun fixture gives each worker one thread, as the reference below gets

    # 1. CFG split over the ranks; rank 1 dies when shot 3 is sent: rank 0's exchange fails, torchrun
    # ends the launch.
    killed = torchrun(["-m", "storymem_cli", *args, "--parallel", "cfg"], STORYMEM_TEST_KILL_AT="3", **env)
    assert killed.returncode != 0
    codes = re.findall(r"exitcode\s*:\s*(-?\d+)", killed.stderr)  # torchrun's summary of the failed ranks
    assert "43" in codes and "97" not in codes, killed.stderr[-3000:]
    partial = json.loads((run / "run.json").read_text())
    assert partial["status"] != "done" and len(partial["shots"]) == 2
    assert partial["model"]["parallel"] == {"world_size": 2, "cfg": 2, "ulysses": 1, "ring": 1,
                                            "backend": "context parallel (diffusers)"}  # fmt: skip
    assert [shot["forwards"] for shot in partial["shots"]] == [8, 8]  # rank 0's: both calls of 4 steps answered
    assert not (run / "story.mp4").exists()

    # 2. The command again, Ulysses this time: resumes at shot 3 and finishes; rank 1 never touched the folder.
    resumed = torchrun(["-m", "storymem_cli", *args], **env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout)  # rank 0 alone prints
    assert summary["kept_shots"] == 2 and [s["mode"] for s in summary["shots"]] == ["t2v", "mi2v", "m2v"]
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "done"
    assert record["model"]["parallel"]["world_size"] == 2 and record["model"]["parallel"]["ulysses"] == 2

    # 3. One process rendered the same story: same plan, memory, files and frames (within TOLERANCE).
    assert_one_process_renders_the_same(run, heron_one_process)
