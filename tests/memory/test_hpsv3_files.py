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
    assert f'hf download {HPSV3_REPO} --include "{HPSV3_CHECKPOINT}"' in str(info.value)


def test_a_missing_base_file_in_the_cache_is_named(cache):
    cache_repo(cache, HPSV3_REPO, [HPSV3_CHECKPOINT])
    cache_repo(cache, HPSV3_BASE_REPO, [n for n in HPSV3_BASE_FILES if n != "chat_template.json"])
    with pytest.raises(MissingWeightsError, match="missing in .*: chat_template.json") as info:
        locate_hpsv3()
    assert download_commands(checkpoint=False)[0] in str(info.value)
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
    assert f'hf download {HPSV3_REPO} --include "{HPSV3_CHECKPOINT}" --local-dir "{tmp_path}"' in str(info.value)


def test_download_commands_mean_what_they_say_to_hfs_own_parser(tmp_path):
    # huggingface_hub 1.x's `hf download`: --include takes one pattern, so it is repeated per file.
    import shlex

    import click
    from huggingface_hub.cli.hf import app

    command = app.get_command(click.Context(app), "download")
    command = command.materialize() if hasattr(command, "materialize") else command
    wanted = [(HPSV3_REPO, [HPSV3_CHECKPOINT]), (HPSV3_BASE_REPO, list(HPSV3_BASE_FILES))]
    for local_dir in (None, tmp_path / "my models"):
        lines = download_commands(local_dir=local_dir)
        for line, (repo, names) in zip(lines, wanted, strict=True):
            params = command.make_context("download", shlex.split(line)[2:]).params
            assert (params["repo_id"], list(params["include"]), list(params["filenames"] or ())) == (repo, names, [])
            assert params["local_dir"] == (None if local_dir is None else str(local_dir))
        assert not any("huggingface-cli" in line for line in lines)
