"""`storymem doctor`: a clean folder passes every row; each row fails on a folder with exactly its fault."""

from __future__ import annotations

import json
import struct

import pytest
from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.models.doctor import Device, Expected, a14b_expected, flags_for_gpu, run_doctor
from storymem_cli.models.registry import resolve_preset
from storymem_cli.models.tiny import TINY_TEXT_ENCODER, TINY_TRANSFORMER, TINY_VAE
from storymem_cli.scoring.hpsv3_files import HPSV3_BASE_FILES, HPSV3_BASE_REPO, HPSV3_CHECKPOINT, HPSV3_REPO

H200 = Device("2.x", "12.8", (("NVIDIA H200", 150_000_000_000),))
TINY_EXPECTED = Expected(
    transformer={"i2v": {"in_channels": 36, "num_layers": TINY_TRANSFORMER["num_layers"]},
                 "t2v": {"in_channels": 16, "ffn_dim": TINY_TRANSFORMER["ffn_dim"]}},
    text_encoder={"d_model": TINY_TEXT_ENCODER["d_model"]}, vae={"z_dim": TINY_VAE["z_dim"]},
)  # fmt: skip
CLIP_REPO, CLIP_FILE = "timm/vit_base_patch32_clip_224.openai", "open_clip_model.safetensors"


def _tiny_safetensors(path, tensors=(("w", (2, 2)),)) -> None:
    from safetensors.numpy import save_file
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.zeros(s, dtype=np.float32) for k, s in tensors}, str(path))


def _cache_file(cache, repo: str, name: str) -> object:
    """A file in the Hugging Face cache layout (refs/main -> snapshots/<rev>/name)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text("0" * 40)
    return root / "snapshots" / ("0" * 40) / name


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A Hugging Face cache holding the scorers' files (tiny stand-ins with valid headers)."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _tiny_safetensors(_cache_file(cache, HPSV3_REPO, HPSV3_CHECKPOINT))
    for name in HPSV3_BASE_FILES:
        path = _cache_file(cache, HPSV3_BASE_REPO, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"model_type": "qwen2_vl"}) if name == "config.json" else "{}")
    _tiny_safetensors(_cache_file(cache, CLIP_REPO, CLIP_FILE))
    monkeypatch.setattr("storymem_cli.models.doctor.disk_free", lambda path: 10**15)
    return cache


def _doctor(folder, device=H200, aesthetic=None):
    return {r.name: r for r in run_doctor(resolve_preset(str(folder)), "mi2v", aesthetic,
                                           expected=TINY_EXPECTED, device=device)}  # fmt: skip


def test_a_complete_folder_passes_every_row(model_folder, hub_cache):
    rows = _doctor(model_folder)
    assert {n: r.status for n, r in rows.items()} == {n: "ok" for n in rows}, rows
    assert set(rows) == {"i2v files", "t2v files", "LoRA files", "configs", "safetensors headers", "LoRA keys",
                         "CLIP ViT-B/32 (embedder)", "HPSv3 scorer", "torch / GPU", "disk"}  # fmt: skip
    assert "800" not in rows["LoRA keys"].detail and "40 tensors" in rows["LoRA keys"].detail  # 2 blocks x 20


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 16])


def _wrong_lora(folder) -> None:
    from safetensors.numpy import load_file, save_file

    for path in (folder / "lora" / "Wan2.2-MI2V-A14B").iterdir():
        tensors = load_file(str(path))
        tensors.pop(next(k for k in tensors if ".blocks.1.ffn.2.lora_A" in k))  # block 1 lacks a tensor
        save_file(tensors, str(path))


def _edit_config(path, **values) -> None:
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, **values}))


FAULTS = {
    "i2v files": lambda f, c: (f / "i2v" / "vae" / "diffusion_pytorch_model.safetensors").unlink(),
    "t2v files": lambda f, c: (f / "t2v" / "transformer_2" / "config.json").unlink(),
    "LoRA files": lambda f, c: (f / "lora" / "Wan2.2-MI2V-A14B" / "backbone_low_noise.safetensors").unlink(),
    "configs": lambda f, c: _edit_config(f / "t2v" / "transformer" / "config.json", ffn_dim=64),
    "safetensors headers": lambda f, c: _truncate(f / "i2v" / "text_encoder" / "model.safetensors"),
    "LoRA keys": lambda f, c: _wrong_lora(f),
    "CLIP ViT-B/32 (embedder)": lambda f, c: _cache_file(c, CLIP_REPO, CLIP_FILE).unlink(),
    "HPSv3 scorer": lambda f, c: _truncate(_cache_file(c, HPSV3_REPO, HPSV3_CHECKPOINT)),
    "torch / GPU": "no gpu",
    "disk": "no disk",
}


@pytest.mark.parametrize("row", list(FAULTS))
def test_each_row_fails_on_its_own_fault(row, model_folder, hub_cache, monkeypatch):
    device = H200
    if row == "torch / GPU":
        device = Device("2.x", None)
    elif row == "disk":
        monkeypatch.setattr("storymem_cli.models.doctor.disk_free", lambda path: 10**9)
    else:
        FAULTS[row](model_folder, hub_cache)
    rows = _doctor(model_folder, device)
    assert rows[row].status == "fail", rows[row]
    assert rows[row].detail and (rows[row].hint or row == "configs")
    others = {n: r.status for n, r in rows.items() if n != row and r.status not in ("ok", "skip")}
    assert others == {}, others  # only the faulty row fails (later rows may be unable to run: skip)


def test_cli_exit_code_and_json(model_folder, hub_cache, monkeypatch):
    monkeypatch.setattr("storymem_cli.models.doctor.probe_device", lambda: H200)
    monkeypatch.setattr("storymem_cli.models.doctor.a14b_expected", lambda: TINY_EXPECTED)
    result = CliRunner().invoke(app, ["doctor", "--model", str(model_folder), "--json"])
    assert result.exit_code == 0, result.output
    assert {r["status"] for r in json.loads(result.stdout)} == {"ok"}
    (model_folder / "i2v" / "vae" / "config.json").unlink()
    result = CliRunner().invoke(app, ["doctor", "--model", str(model_folder)])
    assert result.exit_code == 3 and "i2v files" in result.stdout and "would not start" in result.stdout


def test_the_a14b_widths_are_the_released_configs(tmp_path):
    """The expected widths are those of the hub's config.json (diffusers' conversion script)."""
    from storymem_cli.models.wan_a14b import a14b_transformer_config

    expected = a14b_expected()
    for kind in ("i2v", "t2v"):
        config = a14b_transformer_config(kind)
        assert {k: config[k] for k in expected.transformer[kind]} == expected.transformer[kind]
    assert expected.transformer["i2v"]["num_layers"] == 40 and expected.transformer["i2v"]["in_channels"] == 36
    assert expected.transformer["t2v"]["in_channels"] == 16 and expected.text_encoder["d_model"] == 4096


@pytest.mark.parametrize(("gib", "aesthetic", "flags"), [
    (139.8, "hpsv3", ()), (79.1, "hpsv3", ("--offload", "model")), (44.5, "hpsv3", ("--offload", "model")),
    (23.6, "hpsv3", ("--offload", "group", "--vae-tiling", "--aesthetic", "laion")),
    (23.6, "none", ("--offload", "group", "--vae-tiling")), (15.7, "hpsv3", None),
])  # fmt: skip
def test_gpu_memory_picks_the_documented_flags(gib, aesthetic, flags):
    assert flags_for_gpu(int(gib * 2**30), aesthetic) == flags


def test_headers_are_checked_against_the_file_size(tmp_path):
    from storymem_cli.models.doctor import read_safetensors_header

    path = tmp_path / "a.safetensors"
    _tiny_safetensors(path, (("a", (3, 4)), ("b", (5,))))
    assert set(read_safetensors_header(path)) >= {"a", "b"}
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="truncated or padded"):
        read_safetensors_header(path)
    path.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(ValueError, match="does not fit"):
        read_safetensors_header(path)
