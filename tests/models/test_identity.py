"""The weights id in each shot's fingerprint: it follows the weights, not the name they go by."""

from __future__ import annotations

import os
import shutil

from storymem_cli.models import toy
from storymem_cli.models.identity import source_identity, weights_identity
from storymem_cli.models.presets import A14B, TINY, TOY


def folder_preset(folder):
    return A14B.model_copy(update={"i2v_source": str(folder / "i2v"), "t2v_source": str(folder / "t2v"),
                                   "lora_source": None})  # fmt: skip


def make_model_folder(root):
    for role in ("i2v", "t2v"):
        (root / role / "transformer").mkdir(parents=True)
        (root / role / "transformer" / "weights.safetensors").write_bytes(b"\0" * 64)
    return root


def test_a_rewritten_weight_file_changes_the_id_and_an_untouched_folder_keeps_it(tmp_path):
    folder = make_model_folder(tmp_path / "model")
    before = weights_identity(folder_preset(folder))
    assert weights_identity(folder_preset(folder)) == before
    weight = folder / "t2v" / "transformer" / "weights.safetensors"
    weight.write_bytes(b"\1" * 64)  # retrained: same size, same name
    stat = weight.stat()
    os.utime(weight, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert weights_identity(folder_preset(folder)) != before


def test_a_copy_that_keeps_times_keeps_the_id(tmp_path):
    folder = make_model_folder(tmp_path / "model")
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)  # copy2: times kept
    assert source_identity(str(folder)) == source_identity(str(copy))


def test_the_lora_and_style_loras_are_part_of_the_id(tmp_path):
    folder = make_model_folder(tmp_path / "model")
    lora = tmp_path / "lora.safetensors"
    lora.write_bytes(b"lora")
    style = tmp_path / "style.safetensors"
    style.write_bytes(b"style")
    bare = weights_identity(folder_preset(folder))
    with_lora = weights_identity(folder_preset(folder), str(lora))
    with_style = weights_identity(folder_preset(folder), str(lora), [str(style)])
    assert len({bare, with_lora, with_style}) == 3
    style.write_bytes(b"other style")
    assert weights_identity(folder_preset(folder), str(lora), [str(style)]) != with_style


def test_the_toy_id_follows_the_packed_weights_bytes(tmp_path, monkeypatch):
    packed = tmp_path / "toy.safetensors"
    packed.write_bytes(b"packed weights")
    monkeypatch.setattr(toy, "WEIGHTS_FILE", packed)
    before = weights_identity(TOY)
    assert weights_identity(TOY) == before
    packed.write_bytes(b"packed weights, retrained")
    assert weights_identity(TOY) != before
    assert weights_identity(TINY) != before


def test_a_hub_id_is_its_cached_snapshot_commit(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert source_identity("someone/model") == {"repo": "someone/model"}  # not cached: the id alone
    repo = tmp_path / "models--someone--model"
    (repo / "refs").mkdir(parents=True)
    for commit in ("a" * 40, "b" * 40):
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "refs" / "main").write_text(commit)
        assert source_identity("someone/model") == {"repo": "someone/model", "commit": commit}
