"""Kill a real render with SIGKILL, run it again: same video, finished shots not rendered again.

The comparison with an uninterrupted in-process render also proves determinism: the same seed
gives identical frames on CPU, across processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.render.video import read_frames

from .conftest import STORY, write_script

KILL_AFTER = 2  # shots finished before the kill


def done_shots(run: Path) -> int:
    try:
        return len(json.loads((run / "run.json").read_text())["shots"])
    except (OSError, ValueError, KeyError):
        return 0  # not written yet (it is replaced atomically, so never half written)


@pytest.mark.timeout(1800)  # against a hang only: the test waits on events, so a loaded machine is just slower
def test_sigkill_then_resume_gives_the_uninterrupted_video(tmp_path, generate_log, finished, child_env, wait_for_line):
    import torch

    script = write_script(tmp_path / "scripts", "lantern.json", STORY)
    run = tmp_path / "run"
    # Same thread count as this process: CPU float reductions then match bit for bit.
    env = child_env(OMP_NUM_THREADS=str(torch.get_num_threads()))
    proc = subprocess.Popen(
        [sys.executable, "-m", "storymem_cli", "render", str(script), "-o", str(run), "--model", "tiny",
         "--device", "cpu"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Shot 3 starts once shot 2's record is in run.json: kill right then, mid-shot.
    wait_for_line(proc, f"shot {KILL_AFTER + 1}/5 (")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    killed_at = done_shots(run)
    assert KILL_AFTER <= killed_at < 5, "the kill should land before the story is finished"
    kept = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted((run / "shots").glob("shot_*"))
            if int(p.name[5:8]) <= killed_at}  # fmt: skip

    result = CliRunner().invoke(app, ["render", str(script), "-o", str(run), "--model", "tiny", "--device", "cpu"])
    assert result.exit_code == 0, result.output

    # Only the unfinished shots were generated again.
    prompts = [shot for scene in STORY["scenes"] for shot in scene["video_prompts"]]
    assert [request.prompt for request, _ in generate_log] == prompts[killed_at:]
    assert all((p.stat().st_mtime_ns, p.read_bytes()) == stamp for p, stamp in kept.items())
    # The resumed shot continued from the killed run's exact last frame.
    record = json.loads((run / "run.json").read_text())
    first_request = generate_log[0][0]
    if first_request.mode == "mi2v":
        tail = np.load(run / record["shots"][killed_at - 1]["tail"])["frames"]
        assert first_request.first_frames[0].tobytes() == tail[-1].tobytes()

    # The video equals an uninterrupted render's, frame for frame.
    reference = finished["run"]
    assert np.array_equal(read_frames(run / "story.mp4"), read_frames(reference / "story.mp4"))
    assert [s["memory_ids"] for s in record["shots"]] == [
        s["memory_ids"] for s in json.loads((reference / "run.json").read_text())["shots"]
    ]
    assert not list(run.rglob("*.tmp-*"))


def test_crash_after_the_bank_update_but_before_run_json(tmp_path, generate_log, finished, monkeypatch):
    """The narrowest window: shot 4's clip, tail and keyframes are on disk, run.json does not list
    it yet. The next run rolls the bank back, renders shot 4 again and ends with the same video."""
    from storymem_cli.render.story import StoryRenderer

    script = write_script(tmp_path / "scripts", "lantern.json", STORY)
    run = tmp_path / "run"
    real_save = StoryRenderer._save

    def crash_on_shot_4(self, record):
        if len(record["shots"]) == 4:
            raise KeyboardInterrupt  # what the user's Ctrl-C or a kill looks like here
        real_save(self, record)

    monkeypatch.setattr(StoryRenderer, "_save", crash_on_shot_4)
    result = CliRunner().invoke(app, ["render", str(script), "-o", str(run), "--model", "tiny", "--device", "cpu"])
    assert result.exit_code == 130  # click turns KeyboardInterrupt into "Aborted!", exit 130
    assert (run / "shots" / "shot_004.mp4").is_file() and done_shots(run) == 3
    assert "3" in json.loads((run / "memory.json").read_text())["conditioning"]  # the bank saw shot 4

    monkeypatch.setattr(StoryRenderer, "_save", real_save)
    generate_log.clear()
    result = CliRunner().invoke(app, ["render", str(script), "-o", str(run), "--model", "tiny", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert len(generate_log) == 2
    assert np.array_equal(read_frames(run / "story.mp4"), read_frames(finished["run"] / "story.mp4"))
