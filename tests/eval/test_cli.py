"""`storymem eval` end to end on synthetic run folders with the tiny metric models."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from storymem_cli.cli.app import app

from .conftest import PROMPTS, make_run, write_clip, write_script

runner = CliRunner()
FIVE = ["aesthetic", "prompt_global", "prompt_single", "consistency_all", "consistency_top10"]


def invoke(*args: str):
    return runner.invoke(app, ["eval", *args])


def test_tiny_run_prints_all_five_metrics_and_says_the_models_are_random(run_dir: Path):
    result = invoke(str(run_dir), "--models", "tiny")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for header in ["aesthetic", "quality", "prompt", "global", "single", "consistency", "all pairs", "top-10"]:
        assert header in out
    mean_row = next(line for line in out.splitlines() if "mean" in line)
    values = [float(v) for v in mean_row.replace("│", " ").split()[1:]]
    assert len(values) == 5 and all(math.isfinite(v) for v in values)
    assert all(-1 <= v <= 1 for v in values[1:])
    assert "Winter Morning" in out and "mean" in out
    assert "RANDOM-WEIGHT TINY METRIC MODELS" in result.stderr
    assert "fewer than 10" in out  # 4 shots -> 6 pairs


def test_tiny_json_has_one_entry_per_story_with_the_five_keys(tmp_path: Path):
    runs = [make_run(tmp_path / "batch" / f"story{i}", name=f"Story {i}", prompts=PROMPTS[: 2 + i]) for i in (1, 2)]
    result = invoke(*map(str, runs), "--models", "tiny", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["models"]["kind"] == "tiny" and "RANDOM" in data["models"]["warning"]
    assert [s["story"] for s in data["stories"]] == ["Story 1", "Story 2"]
    for story in data["stories"]:
        assert set(FIVE) <= set(story)
        assert math.isfinite(story["aesthetic"])
        for key in FIVE[1:]:
            assert -1.0 <= story[key] <= 1.0
        assert story["pairs"] == story["shots"] * (story["shots"] - 1) // 2
        assert len(story["top10_pairs"]) == story["pairs"]  # fewer than 10 pairs: all used
        assert any("fewer than 10" in n for n in story["notes"])
    (system,) = data["systems"]
    assert system["system"] == "batch" and system["stories"] == 2
    mean = (data["stories"][0]["consistency_all"] + data["stories"][1]["consistency_all"]) / 2
    assert system["consistency_all"] == pytest.approx(mean)


def test_folder_of_run_folders_is_expanded_in_natural_order(tmp_path: Path):
    for i in (2, 10):
        make_run(tmp_path / "batch" / f"s{i}", name=f"S{i}", prompts=PROMPTS[:2])
    result = invoke(str(tmp_path / "batch"), "--models", "tiny", "--json", "--metrics", "prompt_single")
    assert result.exit_code == 0, result.output
    stories = json.loads(result.stdout)["stories"]
    assert [s["story"] for s in stories] == ["S2", "S10"]
    assert stories[0]["aesthetic"] is None and stories[0]["prompt_single"] is not None


def test_clip_count_mismatch_is_refused(tmp_path: Path):
    script = tmp_path / "story.json"
    write_script(script, PROMPTS)  # 4 shots
    for i in range(3):
        write_clip(tmp_path / "clips" / f"shot_{i + 1}.mp4", 9, seed=i)
    result = invoke("--script", str(script), "--shots", str(tmp_path / "clips"), "--models", "tiny")
    assert result.exit_code == 2
    assert "3 clip(s) but the script 'Winter Morning' has 4 shot(s)" in result.stderr


def test_run_json_listing_fewer_clips_than_shots_is_refused(run_dir: Path):
    run = json.loads((run_dir / "run.json").read_text())
    run["shots"] = run["shots"][:2]
    (run_dir / "run.json").write_text(json.dumps(run))
    result = invoke(str(run_dir), "--models", "tiny")
    assert result.exit_code == 2 and "2 clip(s)" in result.stderr


def test_script_and_shots_from_another_system_sorted_naturally(tmp_path: Path):
    prompts = PROMPTS[:2] * 5 + PROMPTS[:1]  # 11 shots -> 55 pairs, top-10 takes 10
    script = tmp_path / "s.json"
    write_script(script, prompts)
    for i in range(11):
        write_clip(tmp_path / "holo" / f"clip_{i + 1}.mp4", 5, seed=i)
    result = invoke("--script", str(script), "--shots", str(tmp_path / "holo"), "--models", "tiny", "--json",
                    "--metrics", "consistency_all,consistency_top10")
    assert result.exit_code == 0, result.output
    (story,) = json.loads(result.stdout)["stories"]
    assert story["system"] == "holo" and story["shots"] == 11 and story["pairs"] == 55
    assert len(story["top10_pairs"]) == 10 and not any("fewer than 10" in n for n in story["notes"])
    # identical prompts make the most similar pairs: every chosen pair repeats a prompt
    assert all(prompts[i - 1] == prompts[j - 1] for i, j in story["top10_pairs"])


def test_compare_paper_csv_and_plot(run_dir: Path, tmp_path: Path):
    png = tmp_path / "m.png"
    result = invoke(str(run_dir), "--models", "tiny", "--compare", "paper", "--csv", "--plot", str(png))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["story"] for r in rows][:2] == ["Winter Morning", "mean"]
    paper = {r["system"]: r for r in rows if r["story"] == "paper"}
    assert float(paper["paper: StoryMem"]["consistency_all"]) == pytest.approx(0.5065)
    assert float(paper["paper: HoloCine"]["consistency_top10"]) == pytest.approx(0.5005)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_a_saved_result_side_by_side(run_dir: Path, tmp_path: Path):
    saved = invoke(str(run_dir), "--models", "tiny", "--json", "--label", "baseline", "--metrics", "aesthetic")
    (tmp_path / "baseline.json").write_text(saved.stdout)
    result = invoke(str(run_dir), "--models", "tiny", "--metrics", "aesthetic", "--label", "ours",
                    "--compare", str(tmp_path / "baseline.json"), "--compare", "paper")
    assert result.exit_code == 0, result.output
    assert "side by side" in result.stdout
    for name in ["ours", "baseline", "paper: StoryMem"]:
        assert name in result.stdout


def test_missing_weights_name_each_file_and_where_to_get_it(run_dir: Path, tmp_path: Path):
    # Local paths only, so nothing reaches for the network.
    result = invoke(str(run_dir), "--viclip", str(tmp_path / "nope.pth"),
                    "--aesthetic-head", str(tmp_path / "nohead.pth"), "--clip-l", str(tmp_path / "noclip.bin"))
    assert result.exit_code == 3  # missing weights, not a failure
    err = result.stderr
    assert "ViClip-InternVid-10M-FLT.pth" in err and "OpenGVLab/ViCLIP" in err
    assert "nohead.pth" in err and "sa_0_4_vit_l_14_linear.pth" in err
    assert "noclip.bin" in err  # the CLIP is named too, not only the first missing file
    assert "--metrics" in err


def test_bad_metric_name_is_invalid_input(run_dir: Path):
    result = invoke(str(run_dir), "--models", "tiny", "--metrics", "aesthetic,beauty")
    assert result.exit_code == 2 and "beauty" in result.stderr


def test_not_a_run_folder_is_invalid_input(tmp_path: Path):
    result = invoke(str(tmp_path), "--models", "tiny")
    assert result.exit_code == 2 and "run.json" in result.stderr


def test_compare_with_a_file_that_is_not_a_results_file(run_dir: Path, tmp_path: Path):
    (tmp_path / "other.json").write_text('{"story_name": "x"}')
    result = invoke(str(run_dir), "--models", "tiny", "--metrics", "aesthetic", "--compare", str(tmp_path / "other.json"))
    assert result.exit_code == 2 and "not a results file" in result.stderr


def test_long_prompts_and_a_missing_overview_are_reported(tmp_path: Path):
    long_prompt = "A lighthouse keeper " + "slowly climbs the old stairs " * 8  # > 30 BPE tokens
    script = tmp_path / "s.json"
    write_script(script, [PROMPTS[0], long_prompt], overview="")
    for i in range(2):
        write_clip(tmp_path / "clips" / f"{i + 1}.mp4", 5, seed=i)
    result = invoke("--script", str(script), "--shots", str(tmp_path / "clips"), "--models", "tiny", "--json",
                    "--metrics", "prompt_global,prompt_single")
    assert result.exit_code == 0, result.output
    (story,) = json.loads(result.stdout)["stories"]
    assert story["truncated_prompts"] == 1
    assert story["prompt_global"] is None and story["prompt_single"] is not None
    notes = " ".join(story["notes"])
    assert "1 of 2 shot prompts exceed ViCLIP's 30 text tokens" in notes and "no story_overview" in notes


def test_unfinished_render_is_refused(run_dir: Path):
    run = json.loads((run_dir / "run.json").read_text())
    run["status"] = "rendering"
    (run_dir / "run.json").write_text(json.dumps(run))
    result = invoke(str(run_dir), "--models", "tiny")
    assert result.exit_code == 2 and "not finished" in result.stderr


def test_compare_another_run_folder_evaluated_with_the_same_models(tmp_path: Path):
    ours = make_run(tmp_path / "ours" / "s1", prompts=PROMPTS[:2])
    theirs = make_run(tmp_path / "theirs" / "s1", prompts=PROMPTS[:2])
    result = invoke(str(ours), "--label", "ours", "--compare", str(tmp_path / "theirs"), "--models", "tiny",
                    "--metrics", "prompt_single", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [s["system"] for s in data["systems"]] == ["ours", "theirs"]
    # same clips, same prompts, same models -> same score
    assert data["systems"][0]["prompt_single"] == pytest.approx(data["systems"][1]["prompt_single"])
    assert theirs.is_dir()


OFFLINE_PROBE = """
import sys
from storymem_cli.cli.app import main
try:
    main(["eval", sys.argv[1]])
except SystemExit as exit:
    print("exit", exit.code, "torch" in sys.modules, "open_clip" in sys.modules)
"""


def test_without_weights_and_network_eval_says_so_before_importing_torch(run_dir: Path, tmp_path: Path, child_env):
    """Issue 23, item 6: the default weights are looked for in the cache only, and with the hub
    unreachable the missing-weights message comes at once, not after huggingface_hub's retries."""
    import subprocess
    import sys

    empty = tmp_path / "home"
    env = child_env(HOME=str(empty), XDG_CACHE_HOME=str(empty / ".cache"), HF_HOME=str(empty / "hf"),
                    HF_HUB_CACHE=str(empty / "hf" / "hub"), HF_HUB_OFFLINE="1")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", OFFLINE_PROBE, str(run_dir)],
                            capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert result.stdout.split() == ["exit", "3", "False", "False"], (result.stdout, result.stderr)  # missing weights
    assert "ViClip-InternVid-10M-FLT.pth" in result.stderr and "sa_0_4_vit_l_14_linear.pth" in result.stderr
    assert "the Hugging Face hub cannot be reached" in result.stderr
    assert "huggingface.co/timm/vit_large_patch14_clip_224.openai" in result.stderr  # where to get the CLIP
    assert "Retrying" not in result.stderr


def test_an_unreachable_hub_is_not_asked(monkeypatch, tmp_path: Path):
    import huggingface_hub
    import open_clip

    from storymem_cli.errors import MissingWeightsError
    from storymem_cli.scoring import clip

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(clip, "hub_reachable", lambda: False)
    monkeypatch.setattr(open_clip, "download_pretrained", lambda *a, **k: pytest.fail("tried to download"))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("tried to download"))
    for model, tag in [("ViT-L-14-quickgelu", "openai"), ("ViT-B-32", "openai"), ("ViT-B-16", "openai")]:
        with pytest.raises(MissingWeightsError, match="cannot be reached"):
            clip.resolve_clip_checkpoint(model, tag, what="test")
    with pytest.raises(MissingWeightsError, match="cannot be reached"):
        clip.resolve_clip_checkpoint("ViT-B-32", "hf-hub:org/repo", what="test")


def test_a_cached_checkpoint_is_found_without_the_network(monkeypatch, tmp_path: Path):
    """The cache lookup mirrors open_clip's file naming: a snapshot holding the safetensors twin is used."""
    import huggingface_hub

    from storymem_cli.scoring import clip

    snapshot = tmp_path / "models--timm--vit_base_patch32_clip_224.openai" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"x")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(clip, "hub_reachable", lambda: pytest.fail("asked the network"))
    found = clip.resolve_clip_checkpoint("ViT-B-32", "openai", what="test")
    assert found == snapshot / "open_clip_model.safetensors"


def test_known_tags_are_open_clips_own():
    import open_clip

    from storymem_cli.scoring.clip import KNOWN_TAGS

    for (model, tag), cfg in KNOWN_TAGS.items():
        assert open_clip.get_pretrained_cfg(model, tag)["hf_hub"] == cfg["hf_hub"]


def test_plot_labels_do_not_overlap():
    """Issue 23, item 7: "consistency all pairs" and "consistency top-10" ran into each other."""
    import matplotlib.pyplot as plt

    from storymem_cli.eval.metrics import METRICS
    from storymem_cli.eval.report import paper_rows, plot_figure

    fig = plot_figure(paper_rows(), list(METRICS), tiny=False)
    fig.canvas.draw()
    boxes = [label.get_window_extent() for label in fig.axes[0].get_xticklabels()]
    plt.close(fig)
    assert len(boxes) == len(METRICS)
    for left, right in zip(boxes, boxes[1:]):
        assert left.x1 < right.x0, (left, right)
