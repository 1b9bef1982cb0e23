"""find_storymem_lora_files and read_lora_file: what is found where, and what is refused."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from storymem_cli.models.lora import LoraError, find_storymem_lora_files, read_lora_file


def _touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")


def test_variant_folder(tmp_path):
    _touch(tmp_path, "backbone_high_noise.safetensors", "backbone_low_noise.safetensors")
    assert find_storymem_lora_files(tmp_path, "mi2v") == (
        tmp_path / "backbone_high_noise.safetensors",
        tmp_path / "backbone_low_noise.safetensors",
    )


def test_repo_root_picks_the_variant(tmp_path):
    for sub in ("Wan2.2-MI2V-A14B", "Wan2.2-MM2V-A14B"):
        _touch(tmp_path / sub, "backbone_high_noise.safetensors", "backbone_low_noise.safetensors")
    high, low = find_storymem_lora_files(tmp_path, "mm2v")
    assert high == tmp_path / "Wan2.2-MM2V-A14B" / "backbone_high_noise.safetensors"
    assert low == tmp_path / "Wan2.2-MM2V-A14B" / "backbone_low_noise.safetensors"
    assert find_storymem_lora_files(tmp_path, "mi2v")[0].parent.name == "Wan2.2-MI2V-A14B"


def test_a_file_finds_its_sibling(tmp_path):
    _touch(tmp_path, "backbone_high_noise.pth", "backbone_low_noise.pth")
    assert find_storymem_lora_files(tmp_path / "backbone_low_noise.pth", "mi2v") == (
        tmp_path / "backbone_high_noise.pth",
        tmp_path / "backbone_low_noise.pth",
    )


def test_safetensors_preferred_pth_accepted(tmp_path):
    _touch(tmp_path, "backbone_high_noise.pth", "backbone_high_noise.safetensors", "backbone_low_noise.pth")
    high, low = find_storymem_lora_files(tmp_path, "mi2v")
    assert high.suffix == ".safetensors"
    assert low.suffix == ".pth"


def test_one_expert_missing_names_it(tmp_path):
    _touch(tmp_path, "backbone_high_noise.safetensors")
    with pytest.raises(LoraError, match="no backbone_low_noise.safetensors or backbone_low_noise.pth"):
        find_storymem_lora_files(tmp_path, "mi2v")


def test_nothing_found_says_where_it_looked_and_how_to_download(tmp_path):
    with pytest.raises(LoraError) as info:
        find_storymem_lora_files(tmp_path, "mm2v")
    message = str(info.value)
    assert str(tmp_path / "Wan2.2-MM2V-A14B") in message
    assert "backbone_high_noise" in message
    assert 'hf download Kevin-thu/StoryMem --include "Wan2.2-MM2V-A14B/*"' in message and "storymem download --continuation mm2v" in message


def test_bad_variant_and_bad_path(tmp_path):
    with pytest.raises(LoraError, match="unknown StoryMem LoRA variant 'm2v'"):
        find_storymem_lora_files(tmp_path, "m2v")
    with pytest.raises(LoraError, match="does not exist"):
        find_storymem_lora_files(tmp_path / "nope", "mi2v")
    _touch(tmp_path, "style.safetensors")
    with pytest.raises(LoraError, match="not a StoryMem LoRA file name"):
        find_storymem_lora_files(tmp_path / "style.safetensors", "mi2v")


def test_read_refuses_what_it_cannot_read(tmp_path):
    junk = tmp_path / "a.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(LoraError, match="not a readable .safetensors"):
        read_lora_file(junk)
    other = tmp_path / "a.ckpt"
    other.write_bytes(b"x")
    with pytest.raises(LoraError, match="unsupported LoRA file type '.ckpt'"):
        read_lora_file(other)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(LoraError, match="holds a list"):
        read_lora_file(listed)


def test_read_returns_tensors_and_metadata(tmp_path):
    path = tmp_path / "a.safetensors"
    save_file({"k": torch.ones(2)}, str(path), metadata={"lora_alpha": "64.0"})
    tensors, metadata = read_lora_file(path)
    assert torch.equal(tensors["k"], torch.ones(2))
    assert metadata == {"lora_alpha": "64.0"}


def test_the_other_variant_folder_is_refused(tmp_path):
    """MI2V and MM2V files are indistinguishable by content; the folder name is all there is."""
    mm2v = tmp_path / "Wan2.2-MM2V-A14B"
    _touch(mm2v, "backbone_high_noise.safetensors", "backbone_low_noise.safetensors")
    assert find_storymem_lora_files(mm2v, "mm2v")[0].parent == mm2v
    with pytest.raises(LoraError, match="holds the mm2v variant.*mi2v continuation needs Wan2.2-MI2V-A14B"):
        find_storymem_lora_files(mm2v, "mi2v")
    with pytest.raises(LoraError, match="holds the mm2v variant"):
        find_storymem_lora_files(mm2v / "backbone_low_noise.safetensors", "mi2v")


def test_sha256_is_recomputed_when_the_file_changes(tmp_path):
    import hashlib
    import os

    from storymem_cli.models.lora_files import file_sha256

    path = tmp_path / "a.safetensors"
    path.write_bytes(b"one")
    assert file_sha256(path) == hashlib.sha256(b"one").hexdigest()
    path.write_bytes(b"two!")
    os.utime(path, ns=(1, 1))
    assert file_sha256(path) == hashlib.sha256(b"two!").hexdigest()


def test_hugging_face_cache_layout_with_symlinked_files(tmp_path):
    """In the HF cache the files are symlinks into blobs/; the names that matter are the links'."""
    import hashlib

    from storymem_cli.models.lora_files import file_sha256

    blobs = tmp_path / "blobs"
    blobs.mkdir()
    variant = tmp_path / "snapshots" / "0123abc" / "Wan2.2-MI2V-A14B"
    variant.mkdir(parents=True)
    for i, stem in enumerate(("backbone_high_noise", "backbone_low_noise")):
        blob = blobs / f"sha{i}"
        blob.write_bytes(stem.encode())
        (variant / f"{stem}.safetensors").symlink_to(blob)
    high, low = find_storymem_lora_files(variant.parent, "mi2v")
    assert (high.name, low.name) == ("backbone_high_noise.safetensors", "backbone_low_noise.safetensors")
    assert find_storymem_lora_files(low, "mi2v") == (high, low)
    assert file_sha256(high) == hashlib.sha256(b"backbone_high_noise").hexdigest()
