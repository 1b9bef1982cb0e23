"""Where the HPSv3 scorer finds its files: the Hugging Face cache or the user's folder, never a download."""

from __future__ import annotations

import pytest

from storymem_cli.errors import MissingWeightsError
from storymem_cli.scoring.hpsv3_files import (
    HPSV3_BASE_FILES,
    HPSV3_BASE_REPO,
    HPSV3_CHECKPOINT,
    HPSV3_REPO,
    download_commands,
    locate_hpsv3,
)


def cache_repo(cache, repo: str, names, commit: str = "a" * 40):
    """The layout hf download leaves in the cache: refs/main -> snapshots/<commit>/<file>."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in names:
        (snapshot / name).write_bytes(b"{}")
    return snapshot


@pytest.fixture
def cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_both_repos_from_the_cache(cache):
    checkpoint = cache_repo(cache, HPSV3_REPO, [HPSV3_CHECKPOINT]) / HPSV3_CHECKPOINT
    base = cache_repo(cache, HPSV3_BASE_REPO, HPSV3_BASE_FILES)
    files = locate_hpsv3()
    assert (files.checkpoint, files.base) == (checkpoint, base)


def test_nothing_cached_names_the_checkpoint_and_its_download(cache):
    with pytest.raises(MissingWeightsError) as info:
        locate_hpsv3()
    assert f"{HPSV3_CHECKPOINT} of {HPSV3_REPO} is not in the Hugging Face cache" in str(info.value)
    assert f"hf download {HPSV3_REPO} {HPSV3_CHECKPOINT}" in str(info.value)


def test_a_missing_base_file_in_the_cache_is_named(cache):
    cache_repo(cache, HPSV3_REPO, [HPSV3_CHECKPOINT])
    cache_repo(cache, HPSV3_BASE_REPO, [n for n in HPSV3_BASE_FILES if n != "chat_template.json"])
    with pytest.raises(MissingWeightsError, match="missing in .*: chat_template.json") as info:
        locate_hpsv3()
    assert f"hf download {HPSV3_BASE_REPO} {' '.join(HPSV3_BASE_FILES)}" in str(info.value)
    assert "--local-dir" not in str(info.value)  # into the cache, where it was looked for


def test_a_file_with_the_base_files_beside_it(tmp_path, cache):
    for name in (*HPSV3_BASE_FILES, HPSV3_CHECKPOINT):
        (tmp_path / name).write_bytes(b"{}")
    files = locate_hpsv3(tmp_path / HPSV3_CHECKPOINT)
    assert (files.checkpoint, files.base) == (tmp_path / HPSV3_CHECKPOINT, tmp_path)
    assert locate_hpsv3(tmp_path) == files  # or the folder itself


def test_a_lone_checkpoint_file_takes_the_base_files_from_the_cache(tmp_path, cache):
    base = cache_repo(cache, HPSV3_BASE_REPO, HPSV3_BASE_FILES)
    (tmp_path / "mine.safetensors").write_bytes(b"{}")
    assert locate_hpsv3(tmp_path / "mine.safetensors").base == base


def test_a_folder_without_the_checkpoint_says_how_to_get_it_there(tmp_path, cache):
    with pytest.raises(MissingWeightsError) as info:
        locate_hpsv3(tmp_path)
    assert f"hf download {HPSV3_REPO} {HPSV3_CHECKPOINT} --local-dir {tmp_path}" in str(info.value)


def test_download_commands_use_hf_with_file_names_not_include_lists():
    lines = download_commands()
    assert lines == [
        f"hf download {HPSV3_REPO} {HPSV3_CHECKPOINT}",
        f"hf download {HPSV3_BASE_REPO} {' '.join(HPSV3_BASE_FILES)}",
    ]
    assert not any("huggingface-cli" in line or "--include" in line for line in lines)
