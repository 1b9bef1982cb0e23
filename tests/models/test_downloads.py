"""`storymem download`: the plan is the loader's own file list, its sizes and licences; fetching goes
through huggingface_hub with the plan's patterns. No test touches the network."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.models.downloads import RepoDownload, UrlDownload, download_plan, matches, plan_bytes
from storymem_cli.models.presets import A14B, TINY, TOY
from storymem_cli.models.registry import ModelOptions, load_story_model, resolve_preset

runner = CliRunner()
GB = 10**9


def test_default_plan_is_every_part_of_the_render_at_its_real_size():
    plan = download_plan(A14B)
    repos = [d.repo_id for d in plan if isinstance(d, RepoDownload)]
    assert repos == ["Wan-AI/Wan2.2-I2V-A14B-Diffusers", "Wan-AI/Wan2.2-T2V-A14B-Diffusers", "Kevin-thu/StoryMem",
                     "timm/vit_base_patch32_clip_224.openai", "MizzenAI/HPSv3", "Qwen/Qwen2-VL-7B-Instruct"]  # fmt: skip
    sizes = {d.repo_id: d.bytes for d in plan}
    assert 120 * GB < sizes["Wan-AI/Wan2.2-I2V-A14B-Diffusers"] < 130 * GB  # two fp32 experts + bf16 UMT5 + VAE
    assert 110 * GB < sizes["Wan-AI/Wan2.2-T2V-A14B-Diffusers"] < 118 * GB
    assert 4.5 * GB < sizes["Kevin-thu/StoryMem"] < 5.2 * GB  # one variant
    assert 250 * GB < plan_bytes(plan) < 280 * GB
    assert sizes["Qwen/Qwen2-VL-7B-Instruct"] < 50 * 10**6  # its config and tokenizer, never its 16 GB of weights
    for d in plan:
        assert d.licence.name and d.licence.source
        for entry in d.entries:
            assert entry.size.how in ("measured", "estimate") and entry.size.source
    storymem = next(d for d in plan if d.repo_id == "Kevin-thu/StoryMem")
    assert storymem.licence.name == "cc-by-nc-4.0" and "non-commercial" in storymem.licence.note


def test_options_choose_the_lora_variant_and_the_scorers():
    mm2v = download_plan(A14B, "mm2v", "none")
    lora = next(d for d in mm2v if d.repo_id == "Kevin-thu/StoryMem")
    assert lora.patterns == ("Wan2.2-MM2V-A14B/backbone_high_noise.safetensors",
                             "Wan2.2-MM2V-A14B/backbone_low_noise.safetensors")  # fmt: skip
    assert not any("HPSv3" in getattr(d, "repo_id", "") for d in mm2v)
    assert download_plan(A14B, "none")[2].patterns[0].startswith("Wan2.2-MI2V-A14B/")  # none loads the MI2V variant
    laion = download_plan(A14B, aesthetic="laion")
    assert "timm/vit_large_patch14_clip_224.openai" in [getattr(d, "repo_id", "") for d in laion]
    assert any(isinstance(d, UrlDownload) and d.dest.name == "sa_0_4_vit_l_14_linear.pth" for d in laion)
    assert download_plan(TINY) == [] and download_plan(TOY) == []


def test_a_folder_preset_downloads_no_wan_repo(model_folder):
    plan = download_plan(resolve_preset(str(model_folder)))
    assert [getattr(d, "repo_id", None) for d in plan][:1] == ["timm/vit_base_patch32_clip_224.openai"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="records opens with Linux inotify")
def test_the_plan_covers_exactly_the_files_the_loader_opens(model_folder):
    """Every file the loader opens (Python, Rust safetensors and tokenizers alike: inotify sees them all)
    is fetched by the plan; what the plan fetches beyond them is small."""
    from inotify_simple import INotify, flags

    preset = resolve_preset(str(model_folder))
    parts = {d.local_subdir: d for d in download_plan(preset.model_copy(update={
        "i2v_source": A14B.i2v_source, "t2v_source": A14B.t2v_source, "lora_source": A14B.lora_source}))
        if isinstance(d, RepoDownload) and d.local_subdir}  # fmt: skip
    inotify, dirs = INotify(), {}
    for folder in [model_folder, *(p for p in model_folder.rglob("*") if p.is_dir())]:
        dirs[inotify.add_watch(str(folder), flags.OPEN)] = folder
    model = load_story_model(preset, ModelOptions(device="cpu", continuation="mi2v"))
    model.pipeline("t2v")
    model.pipeline("m2v")  # both pairs, the LoRA injected
    opened = {(dirs[e.wd] / e.name).relative_to(model_folder).as_posix()
              for e in inotify.read(timeout=0) if e.name and not e.mask & flags.ISDIR}  # fmt: skip
    inotify.close()
    assert any(p.endswith(".safetensors") for p in opened)

    def split(path: str) -> tuple[str, str]:
        sub, _, rest = path.partition("/")
        return sub, rest

    not_planned = [p for p in opened if not matches(split(p)[1], parts[split(p)[0]].patterns)]
    assert not_planned == []
    files = [p.relative_to(model_folder).as_posix() for p in model_folder.rglob("*") if p.is_file()]
    planned = {f for f in files if split(f)[0] in parts and matches(split(f)[1], parts[split(f)[0]].patterns)}
    extra = {f: (model_folder / f).stat().st_size for f in planned - opened}
    assert all(size < 64 * 1024 for size in extra.values()), extra  # model_index.json and the like
    for sub, part in parts.items():  # no pattern fetches nothing the loader reads
        for pattern in part.patterns:
            hits = {f for f in planned if split(f)[0] == sub and matches(split(f)[1], (pattern,))}
            assert hits & opened or pattern == "model_index.json", (sub, pattern)


def test_dry_run_offline_lists_files_sizes_and_licences(monkeypatch):
    monkeypatch.setattr("storymem_cli.models.weights.hub_reachable", lambda timeout=3.0: False)
    result = runner.invoke(app, ["download", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["sizes"] == "offline" and 250 * GB < report["bytes"] < 280 * GB
    licences = {d["repo"]: d["licence"] for d in report["downloads"] if "repo" in d}
    assert licences["Wan-AI/Wan2.2-I2V-A14B-Diffusers"] == "apache-2.0"
    assert licences["Kevin-thu/StoryMem"] == "cc-by-nc-4.0"
    text = runner.invoke(app, ["download", "--dry-run", "--aesthetic", "none"]).stdout
    assert "transformer_2/*" in text and "total:" in text and "HPSv3" not in text


def test_download_offline_says_so_and_fetches_nothing(monkeypatch):
    monkeypatch.setattr("storymem_cli.models.weights.hub_reachable", lambda timeout=3.0: False)
    result = runner.invoke(app, ["download"])
    assert result.exit_code != 0 and "cannot be reached" in result.output and "--dry-run" in result.output


def test_download_fetches_the_plans_patterns_into_the_model_folder_layout(monkeypatch, tmp_path):
    import huggingface_hub

    calls = []
    monkeypatch.setattr("storymem_cli.models.weights.hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr("storymem_cli.models.downloads.resolve_online", lambda d: d)  # no hub metadata here
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo, allow_patterns, local_dir: calls.append((repo, allow_patterns, local_dir)) or "x")  # fmt: skip
    result = runner.invoke(app, ["download", "--aesthetic", "none", "--local-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert calls[0] == ("Wan-AI/Wan2.2-I2V-A14B-Diffusers", ["model_index.json", "tokenizer/*", "text_encoder/*",
                        "vae/*", "scheduler/*", "transformer/*", "transformer_2/*"], str(tmp_path / "i2v"))  # fmt: skip
    assert calls[1][0] == "Wan-AI/Wan2.2-T2V-A14B-Diffusers" and calls[1][2] == str(tmp_path / "t2v")
    assert calls[2][2] == str(tmp_path / "lora")
    assert calls[3] == ("timm/vit_base_patch32_clip_224.openai", ["open_clip_model.safetensors"], None)  # the cache
    assert json.loads(result.stdout)["downloads"][0]["path"] == "x"


def test_builtin_models_need_nothing():
    result = runner.invoke(app, ["download", "--model", "toy"])
    assert result.exit_code == 0 and "nothing to download" in result.output
    assert runner.invoke(app, ["download", "--model", "nope"]).exit_code == 2


def test_an_online_plan_takes_the_hubs_files_sizes_and_licence(monkeypatch):
    import huggingface_hub

    from storymem_cli.models.downloads import resolve_online

    class Info:
        siblings = [type("S", (), {"rfilename": n, "size": s})() for n, s in
                    (("transformer/a.safetensors", 7), ("README.md", 5), ("model_index.json", 1))]  # fmt: skip
        card_data = type("C", (), {"license": "other"})()

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, repo, files_metadata: Info())
    resolved = resolve_online(download_plan(A14B)[1])
    assert resolved.files == (("transformer/a.safetensors", 7), ("model_index.json", 1)) and resolved.bytes == 8
    assert resolved.licence.name == "other"


def test_download_and_doctor_help_do_not_import_torch():
    import os
    import subprocess

    root = Path(__file__).resolve().parents[2]
    code = ("import sys\nfrom storymem_cli.cli.app import main\n"
            "for args in (['download', '--help'], ['doctor', '--help'], ['download', '--dry-run', '--aesthetic', 'laion']):\n"
            "    try: main(args)\n    except SystemExit: pass\n"
            "print('HEAVY=' + ','.join(m for m in ('torch', 'diffusers', 'transformers', 'open_clip') if m in sys.modules))\n")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "HEAVY=", done.stdout + done.stderr
