"""benchmarks/gpu_check.py --tiny: the device check's every code path, rehearsed on the CPU."""

from __future__ import annotations

import json

import pytest


# 40 s on 2 cores: every mode of the device check rendered; run on purpose (python -m pytest -m slow), and
# before a device call. CI keeps the parts and budget tests below (the suite's 6-minute budget, issue 33).
@pytest.mark.slow
def test_the_cpu_rehearsal_renders_every_mode_and_projects(load_benchmark, tmp_path, capsys):
    check = load_benchmark("gpu_check")
    report = check.main(["--tiny", "--out", str(tmp_path), "--budget-s", "100000"])  # every mode, however slow

    assert json.loads((tmp_path / "gpu_check.json").read_text()) == json.loads(json.dumps(report))
    renders = {r["mode"]: r for r in report["renders"]}
    assert list(renders) == [name for name, _, _ in check.MODES]
    for render in renders.values():
        assert render["finished"], render
        assert len(render["shot_s"]) == 4 and all(s > 0 for s in render["shot_s"])
        want = ["t2v", "mm2v", "m2v", "mm2v"] if "mm2v" in render["mode"] else ["mr2v", "mi2v", "m2v", "mi2v"]
        assert render["modes"] == want  # the reference makes the first shot MR2V; continuations follow the flag
    # every run folder holds a finished story whose run.json says how it ran
    vae_tiled = json.loads((tmp_path / "runs" / "offload_group_plus_VAE_tiling" / "run.json").read_text())
    assert vae_tiled["model"]["offload"] == "group" and vae_tiled["model"]["vae_tiling"] is True
    assert vae_tiled["model"]["storymem_lora"]["fused"] is True

    forwards = {f["backend"]: f for f in report["forwards"]}
    assert list(forwards) == ["sdpa (default)", "attention auto -> native", *(f.label for f in check.FAST_FORWARDS)]
    assert forwards["fp8 layerwise (storage)"]["seconds"] > 0
    for fast in check.FAST_FORWARDS:  # compiled, on a GPU kernel, offloaded to a GPU: GPU only, and it says so
        assert fast.label == "fp8 layerwise (storage)" or forwards[fast.label]["unavailable"] == "timed on a GPU only"
    kernels = {k["backend"]: k for k in report["kernels"]}
    assert list(kernels) == list(check.KERNEL_BACKENDS) and kernels["native"]["seconds"] > 0
    assert all(k["unavailable"] for name, k in kernels.items() if name != "native")  # GPU kernels, none on the CPU
    magcache = renders["magcache + compile, 12 steps"]  # skips decided by the published curve; no compile on the CPU
    assert sum(magcache["forwards_skipped"]) > 0 and magcache["forwards"] == [24] * 4 and magcache["graphs_compiled"] == 0
    assert forwards["sdpa (default)"]["seconds"] > 0 and forwards["sdpa (default)"]["tokens"] == 5 * 3 * 4
    for forward in forwards.values():  # measured, or says why not: never silently missing
        assert (forward["seconds"] is None) != (forward["unavailable"] is None)

    projection = report["projection"]
    assert projection["computed"] is True
    plain = {name for name, args, _ in check.MODES if not set(check.FAST_ARGS) & set(args)}
    assert set(projection["per_offload_mode"]) == plain and "offload group + VAE tiling" in plain
    fast = projection["minutes_per_story_by_forward"]
    assert fast["sdpa + --guidance 1, 4 steps (distilled LoRA)"] < fast["sdpa (default)"]
    with_magcache = projection["minutes_per_story_with_magcache"]
    assert with_magcache and all(minutes < fast["sdpa (default)"] for key, minutes in with_magcache.items()
                                 if key.startswith("sdpa (default) +"))  # fmt: skip
    assert 0.85 < projection["story_work"] < 0.95  # memory grows by 3 keyframes a shot: ~0.90 of every shot at M=10
    assert all(row["minutes_per_story"] > 0 for row in projection["per_offload_mode"].values())
    assert report["params"]["a14b"]["expert"] > 14e9  # the real expert, counted on the meta device
    table = capsys.readouterr().out
    assert "COMPUTED" in table and "offload group + VAE tiling" in table


def test_a_spent_budget_skips_modes_and_says_so(load_benchmark, tmp_path):
    check = load_benchmark("gpu_check")
    report = check.main(["--tiny", "--out", str(tmp_path), "--budget-s", "0"])
    assert all(r["skipped"] and not r["finished"] for r in report["renders"])
    assert report["projection"]["note"].startswith("no offload-none render")
    assert report["forwards"][0]["seconds"] > 0  # the forwards still run


def test_parts_run_alone(load_benchmark, tmp_path):
    check = load_benchmark("gpu_check")
    report = check.main(["--tiny", "--out", str(tmp_path), "--parts", "forwards"])
    assert report["renders"] == [] and report["forwards"]
    logged = [json.loads(line) for line in (tmp_path / "forwards.jsonl").read_text().splitlines()]
    assert logged == report["forwards"]  # each forward is logged as it is measured
    # a forwards log joined with another run's report: both parts in one table and projection
    merged = check.main(["--merge", str(tmp_path / "gpu_check.json"), str(tmp_path / "forwards.jsonl"),
                         "--out", str(tmp_path / "merged")])  # fmt: skip
    assert merged["forwards"] == report["forwards"] * 2
    assert merged["projection"]["forward_s_40_layers"] > 0
    assert json.loads((tmp_path / "merged" / "gpu_check.json").read_text()) == json.loads(json.dumps(merged))
