"""`storymem download`: fetch exactly what a render of a preset loads, saying first how much and under which licences."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from storymem_cli.cli.app import app
from storymem_cli.cli.fields import choices
from storymem_cli.errors import InvalidInputError, MissingWeightsError
from storymem_cli.render.settings import RenderOptions  # torch-free

Continuation = choices("Continuation", RenderOptions, "continuation")
Aesthetic = choices("Aesthetic", RenderOptions, "aesthetic")
GB = 10**9


def _gb(n: int) -> str:
    if n >= GB / 10:
        return f"{n / GB:,.1f} GB"
    return f"{n / 1e6:,.1f} MB" if n >= 10**5 else f"{n / 1e3:,.0f} kB"


def _describe(download: Any) -> dict[str, Any]:
    from storymem_cli.models.downloads import RepoDownload

    out: dict[str, Any] = {"role": download.role, "bytes": download.bytes,
                           "licence": download.licence.name, "licence_source": download.licence.source}  # fmt: skip
    if download.licence.note:
        out["licence_note"] = download.licence.note
    if isinstance(download, RepoDownload):
        out.update(repo=download.repo_id, patterns=list(download.patterns))
        if download.files:
            out["files"] = [{"path": p, "bytes": b, "size": "hub"} for p, b in download.files]
        else:
            out["files"] = [{"pattern": e.pattern, "bytes": e.size.bytes, "size": e.size.how, "source": e.size.source}
                            for e in download.entries]  # fmt: skip
    else:
        out.update(url=download.url, dest=str(download.dest),
                   files=[{"path": download.dest.name, "bytes": download.bytes, "size": download.size.how}])  # fmt: skip
    return out


def _print_plan(plan: list[Any], online: bool) -> None:
    from storymem_cli.models.downloads import RepoDownload, plan_bytes

    for d in plan:
        where = d.repo_id if isinstance(d, RepoDownload) else d.url
        typer.echo(f"{where}  ({d.role})")
        typer.echo(f"  licence: {d.licence.name}" + (f": {d.licence.note}" if d.licence.note else ""))
        rows = (
            [(p, b, "hub") for p, b in d.files]
            if isinstance(d, RepoDownload) and d.files
            else [(e.pattern, e.size.bytes, e.size.label()) for e in d.entries]
            if isinstance(d, RepoDownload)
            else [(d.dest.name, d.bytes, d.size.label())]
        )
        for name, size, how in rows:
            typer.echo(f"  {_gb(size):>10}  {name}  ({how})")
    basis = "sizes from the hub" if online else "sizes measured on the hub's file pages or estimated (no hub access)"
    typer.echo(f"total: {_gb(plan_bytes(plan))} ({basis})")


def _fetch(download: Any, local_dir: Path | None) -> str:
    """Download one part through huggingface_hub (resumable; its own progress bars); returns where it went."""
    from storymem_cli.models.downloads import RepoDownload

    if isinstance(download, RepoDownload):
        from huggingface_hub import snapshot_download

        target = local_dir / download.local_subdir if local_dir is not None and download.local_subdir else None
        return snapshot_download(download.repo_id, allow_patterns=list(download.patterns),
                                 local_dir=str(target) if target else None)  # fmt: skip
    import shutil
    import tempfile
    import urllib.request

    download.dest.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(download.url, timeout=60) as response, tempfile.NamedTemporaryFile(
        dir=download.dest.parent, delete=False
    ) as tmp:
        shutil.copyfileobj(response, tmp)
    Path(tmp.name).replace(download.dest)  # whole or not at all
    return str(download.dest)


@app.command()
def download(
    model: str = typer.Option("wan2.2-a14b", "--model", "-m", help="The preset whose weights to fetch."),
    continuation: Continuation = typer.Option(  # type: ignore[valid-type]
        "mi2v", help="Which StoryMem LoRA variant: the one render --continuation loads (none: the MI2V one)."
    ),
    aesthetic: Aesthetic | None = typer.Option(  # type: ignore[valid-type]
        None, help="The keyframe filter render will use (default: the model's, hpsv3 for wan2.2-a14b); none fetches no scorer."
    ),
    local_dir: Path | None = typer.Option(
        None, "--local-dir", metavar="DIR",
        help="Put the Wan and LoRA repos in DIR/i2v, DIR/t2v, DIR/lora (render with --model DIR) instead of the "
        "Hugging Face cache. The scorers' files (HPSv3, CLIP) always go to the cache, where they are looked for.",
    ),  # fmt: skip
    dry_run: bool = typer.Option(False, "--dry-run", help="List the files, sizes and licences; download nothing."),
    json_output: bool = typer.Option(False, "--json", help="Print the plan (and where each part went) as JSON."),
) -> None:
    """Download the weights a render of MODEL loads, and nothing else: the I2V experts, text encoder, VAE,
    tokenizer and scheduler, the T2V experts, the StoryMem LoRA variant for --continuation, and the
    keyframe scorers (HPSv3's checkpoint and Qwen2-VL's small files, or CLIP ViT-L/14 and the LAION head;
    CLIP ViT-B/32 for the memory embedder).

    Prints every file with its size and each repo's licence, and the total, before downloading. Downloads
    go through huggingface_hub: resumable (run it again after an interruption), with its own progress bars,
    into its cache (HF_HOME, HF_HUB_CACHE) unless --local-dir. Then run storymem doctor to check them.
    """
    from storymem_cli.models.downloads import download_plan, plan_bytes, resolve_online
    from storymem_cli.models.presets import PRESETS
    from storymem_cli.models.weights import hub_reachable

    if model not in PRESETS:
        raise InvalidInputError(f"unknown model {model!r} for download", hint=f"use one of {', '.join(PRESETS)}")
    if local_dir is not None:
        from storymem_cli.cli.paths import check_output_path

        check_output_path(local_dir, "--local-dir", folder=True)  # before the plan, not after a 250 GB fetch
    plan = download_plan(PRESETS[model], continuation.value, aesthetic.value if aesthetic else None)
    if not plan:
        typer.echo(f"{model} is built in: nothing to download", err=not json_output)
        if json_output:
            typer.echo(json.dumps({"model": model, "bytes": 0, "downloads": []}))
        return
    online = hub_reachable()
    if online:
        from storymem_cli.models.downloads import RepoDownload

        try:
            plan = [resolve_online(d) if isinstance(d, RepoDownload) else d for d in plan]
        except Exception as err:  # huggingface_hub's HTTP, auth and gating errors: the offline figures still hold
            typer.echo(f"warning: the hub's file list could not be read ({type(err).__name__}: {err}); "
                       "showing the offline sizes", err=True)  # fmt: skip
            online = False
    elif not dry_run:
        raise MissingWeightsError(
            "the Hugging Face hub cannot be reached (offline, or HF_HUB_OFFLINE is set): nothing can be downloaded",
            hint="run it where the hub is reachable; storymem download --dry-run lists what it would fetch",
        )
    report = {"model": model, "bytes": plan_bytes(plan), "sizes": "hub" if online else "offline",
              "downloads": [_describe(d) for d in plan]}  # fmt: skip
    if not json_output:
        _print_plan(plan, online)
    if dry_run:
        if json_output:
            typer.echo(json.dumps(report, indent=2))
        return
    from huggingface_hub.utils import enable_progress_bars

    enable_progress_bars()  # huggingface_hub's own progress display (storymem hides it elsewhere)
    for entry, d in zip(report["downloads"], plan, strict=True):
        typer.echo(f"downloading {entry.get('repo', entry.get('url'))} ...", err=True)
        entry["path"] = _fetch(d, local_dir)
    if json_output:
        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo("done: check them with storymem doctor" + (f" --model {local_dir}" if local_dir else ""))
