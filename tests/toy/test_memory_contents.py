"""benchmarks/toy_memory_contents.py: what memory held in a toy benchmark run, read back with the detector."""

from __future__ import annotations

import json

import numpy as np
import pytest


def _image(shape: str, shot: int, frame: int) -> dict:
    return {"id": f"s{shot}-f{frame}", "shape": shape, "shot": shot, "frame": frame}


def test_summary_counts_memory_images_and_splits_later_shots_by_what_memory_showed(load_benchmark):
    contents = load_benchmark("toy_memory_contents")
    runs = [{"shots": [
        {"mode": "t2v", "shape": "square", "stability": 0.5, "memory": []},
        # memory all squares (purity 1.0); the shot keeps the square
        {"mode": "m2v", "shape": "square", "stability": 1.0, "memory": [_image("square", 0, 0), _image("square", 0, 8)]},
        # one square of three (purity 1/3); the shot draws a circle
        {"mode": "m2v", "shape": "circle", "stability": 0.75,
         "memory": [_image("square", 0, 0), _image("circle", 1, 0), _image("circle", 1, 6)]},
    ]}]  # fmt: skip
    summary = contents.summarise(runs)

    assert summary["frame_stability"] == {"t2v": {"shots": 1, "share": 0.5}, "m2v": {"shots": 2, "share": 0.875}}
    held = {(m["source"], m["frames"]): (m["images"], m["shot1_shape"]) for m in summary["memory_images"]}
    assert held == {("shot 1", "first frame"): (2, 1.0), ("shot 1", "other frames"): (1, 1.0),
                    ("later shots", "first frame"): (1, 0.0), ("later shots", "other frames"): (1, 0.0)}  # fmt: skip
    assert summary["agreement_by_purity"] == {
        "0.0-0.5": {"shots": 1, "agreement": 0.0},
        "0.5-0.8": {"shots": 0, "agreement": None},
        "0.8-1.0": {"shots": 1, "agreement": 1.0},
    }


@pytest.fixture
def run_folder(tmp_path):
    """A run folder as `storymem render` leaves it, holding the toy renderer's own clips: shot 1 a
    square, shot 2 the same square with two of shot 1's frames in memory, shot 3 a circle."""
    from storymem_cli.config import MemoryConfig
    from storymem_cli.memory.bank import MemoryBank
    from storymem_cli.memory.embed import PixelEmbedder
    from storymem_cli.render.video import upscale_nearest, write_clip
    from storymem_cli.toy.render import render_clip
    from storymem_cli.toy.world import Character, Shot

    folder = tmp_path / "runs" / "story"
    square, circle = Character("square", "red", "none"), Character("circle", "blue", "hat")
    clips = [render_clip(Shot(c, "walk_right", "meadow"), np.random.default_rng(k), size=32)
             for k, c in enumerate((square, square, circle))]  # fmt: skip
    bank = MemoryBank.open(folder, MemoryConfig(aesthetic="none"))
    ids = bank.add_shot_keyframes(0, clips[0], [0, 8], PixelEmbedder().embed(clips[0]), None)
    bank.save()
    shots = []
    for k, clip in enumerate(clips):
        write_clip(upscale_nearest(clip, 4), folder / "shots" / f"shot_{k + 1:03d}.mp4", 16)  # as the benchmark writes them
        shots.append({"path": f"shots/shot_{k + 1:03d}.mp4", "mode": "t2v" if k == 0 else "m2v",
                      "memory_ids": [] if k == 0 else ids})  # fmt: skip
    (folder / "run.json").write_text(json.dumps({"status": "done", "shots": shots}), encoding="utf-8")
    return folder


def test_a_run_folder_of_true_clips_reads_as_one_shape_per_shot_and_memory_of_shot_1(load_benchmark, run_folder):
    contents = load_benchmark("toy_memory_contents")
    run = contents.read_run(run_folder)

    assert [s["shape"] for s in run["shots"]] == ["square", "square", "circle"]
    assert all(s["stability"] == 1.0 for s in run["shots"])  # the renderer's frames each show the clip's shape
    assert [(m["shot"], m["frame"], m["shape"]) for m in run["shots"][1]["memory"]] == [(0, 0, "square"), (0, 8, "square")]
    summary = contents.summarise([run])
    assert summary["agreement_by_purity"]["0.8-1.0"] == {"shots": 2, "agreement": 0.5}  # shot 3 lost the square


def test_the_command_reports_and_refuses_a_folder_without_runs(load_benchmark, run_folder, tmp_path, capsys):
    contents = load_benchmark("toy_memory_contents")
    assert contents.main([str(tmp_path / "runs" / "story" / "shots")]) == 2
    assert "no run folders" in capsys.readouterr().err

    assert contents.main([str(run_folder.parent), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["stories"] == 1 and summary["frame_stability"]["m2v"]["shots"] == 2
