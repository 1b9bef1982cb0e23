"""Every download command the docs and messages give parses with huggingface_hub's own `hf` CLI parser
into what it means to fetch: no stray file names, one pattern per --include, the plan's patterns."""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path

import pytest

from storymem_cli.models.downloads import RepoDownload, download_plan
from storymem_cli.models.presets import A14B

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```[a-z]*\n(.*?)```", re.S)
INLINE = re.compile(r"`(hf download [^`]+)`")


def hf_download(args: list[str]) -> dict:
    """What `hf download ARGS` means to huggingface_hub's own parser (its typer/click command)."""
    import click
    from huggingface_hub.cli.hf import app

    command = app.get_command(click.Context(app), "download")
    command = command.materialize() if hasattr(command, "materialize") else command  # lazily built in 1.x
    return command.make_context("download", args).params


def documented_commands() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for block in FENCE.findall(text):
            block = re.sub(r"\\\n", " ", block)  # a shell line continued with a backslash is one command
            found += [(path.name, line.strip()) for line in block.splitlines() if line.strip().startswith("hf download")]
        found += [(path.name, m) for m in INLINE.findall(FENCE.sub("", text))]
    return found


def plan_patterns() -> dict[str, set[str]]:
    patterns: dict[str, set[str]] = {}
    for continuation in ("mi2v", "mm2v"):
        for aesthetic in ("hpsv3", "laion"):
            for d in download_plan(A14B, continuation, aesthetic):
                if isinstance(d, RepoDownload):
                    patterns.setdefault(d.repo_id, set()).update(d.patterns)
    return patterns


def test_the_docs_give_download_commands():
    names = {name for name, _ in documented_commands()}
    assert {"README.md", "models.md", "lora.md", "eval.md"} <= names


@pytest.mark.parametrize(("doc", "line"), documented_commands())
def test_documented_download_parses_as_intended(doc, line):
    params = hf_download(shlex.split(line, comments=True)[2:])
    include, filenames = tuple(params["include"] or ()), tuple(params["filenames"] or ())
    assert not (include and filenames), f"{doc}: {filenames} are file names, so --include is ignored: {line}"
    planned = plan_patterns().get(params["repo_id"])
    if planned is None:
        return  # a repo outside the render (ViCLIP for eval): a file name is a fine way to ask for one file
    assert not filenames, f"{doc}: {line}"
    for pattern in include:  # each is a plan pattern, or a folder glob covering some
        assert pattern in planned or any(fnmatch.fnmatch(p, pattern) for p in planned), (doc, pattern)


def test_readme_lines_fetch_the_whole_default_plan():
    readme = [line for doc, line in documented_commands() if doc == "README.md"]
    includes: dict[str, list[str]] = {}
    for line in readme:
        params = hf_download(shlex.split(line, comments=True)[2:])
        includes.setdefault(params["repo_id"], []).extend(params["include"])
    for d in download_plan(A14B):
        assert isinstance(d, RepoDownload)
        for pattern in d.patterns:
            assert any(fnmatch.fnmatch(pattern, inc) for inc in includes.get(d.repo_id, [])), (d.repo_id, pattern)


def test_the_hints_storymem_prints_parse_too():
    from storymem_cli.models.lora_files import storymem_hub_files
    from storymem_cli.models.weights import I2V_COMPONENTS, download_command, repo_patterns

    for line in (download_command("Wan-AI/Wan2.2-I2V-A14B-Diffusers", repo_patterns(I2V_COMPONENTS)),
                 download_command("Kevin-thu/StoryMem", storymem_hub_files("mm2v")),
                 download_command("org/repo", "transformer/*")):  # fmt: skip
        params = hf_download(shlex.split(line)[2:])
        assert not params["filenames"] and len(params["include"]) == len(shlex.split(line)[3::2])


def test_no_stale_client_or_distribution_names():
    """huggingface-cli is gone with huggingface_hub 1.x; the distribution is storymem-cli."""
    files = [*DOCS, *sorted((ROOT / "src").rglob("*.py"))]
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "huggingface-cli" not in text, path
        assert not re.search(r"(?<![\w-])storymem\[", text), path
    assert "never downloads" not in (ROOT / "README.md").read_text(encoding="utf-8")
