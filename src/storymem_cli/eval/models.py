"""The metric models: ViCLIP (prompt following, consistency) and the LAION aesthetic predictor.

`load_metric_models` finds every weight file a metric selection needs before loading
anything, and names all missing files at once with where to get each. `tiny` builds
small random-weight models from a fixed seed (same classes, same code path) so the whole
command runs on a CPU without downloads; its numbers mean nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from storymem_cli.errors import MissingWeightsError

if TYPE_CHECKING:
    from storymem_cli.eval.viclip import ViCLIP
    from storymem_cli.scoring.laion import LaionAesthetic

ModelsKind = Literal["real", "tiny"]

VICLIP_FILE = "ViClip-InternVid-10M-FLT.pth"
# Hugging Face repos holding VICLIP_FILE, looked up in the local hub cache only (no download):
# the official one is gated, VBench's mirror is not.
VICLIP_REPOS = ("OpenGVLab/ViCLIP", "OpenGVLab/VBench_Used_Models")
VICLIP_HINT = (
    f"get {VICLIP_FILE} (1.7 GB) from Hugging Face OpenGVLab/ViCLIP (gated: accept the licence, then "
    f"`hf download OpenGVLab/ViCLIP {VICLIP_FILE}`) or its mirror OpenGVLab/VBench_Used_Models, "
    "and pass --viclip PATH"
)
TINY_SEED = 0

VICLIP_METRICS = frozenset({"prompt_global", "prompt_single", "consistency_all", "consistency_top10"})


def default_viclip_paths() -> list[Path]:
    """Local places a ViCLIP checkpoint may already be: the HF hub cache, then VBench's cache."""
    found: list[Path] = []
    try:
        from huggingface_hub import try_to_load_from_cache

        for repo in VICLIP_REPOS:
            hit = try_to_load_from_cache(repo, VICLIP_FILE)
            if isinstance(hit, str):
                found.append(Path(hit))
    except ImportError:  # huggingface_hub is a dependency; tolerate odd installs
        pass
    found.append(Path.home() / ".cache" / "vbench" / "ViCLIP" / VICLIP_FILE)
    return found


def find_viclip(path: str | os.PathLike[str] | None) -> Path | None:
    """The ViCLIP checkpoint to use, or None when it is nowhere on this machine."""
    if path is not None:
        p = Path(path).expanduser()
        return p if p.is_file() else None
    return next((p for p in default_viclip_paths() if p.is_file()), None)


def _find_clip(clip_l: str | os.PathLike[str] | None) -> tuple[Path | None, list[str]]:
    """The aesthetic CLIP checkpoint, or None and why it is missing."""
    from storymem_cli.scoring.clip import resolve_clip_checkpoint
    from storymem_cli.scoring.laion import CLIP_MODEL

    try:
        what = "aesthetic CLIP ViT-L/14"
        return resolve_clip_checkpoint(CLIP_MODEL, clip_l if clip_l is not None else "openai", what=what), []
    except MissingWeightsError as err:
        return None, [f"{err.message}: {err.hint}" if err.hint else err.message]


@dataclass
class MetricModels:
    """What `evaluate_story` embeds and scores with. A metric whose model is None is skipped."""

    kind: ModelsKind
    viclip: ViCLIP | None = None
    aesthetic: LaionAesthetic | None = None
    device: str = "cpu"
    sources: dict[str, str] = field(default_factory=dict)  # metric model -> file or "random (tiny)"

    @property
    def image_size(self) -> int:
        return self.viclip.config.image_size

    @property
    def context_length(self) -> int:
        return self.viclip.config.context_length

    @property
    def num_frames(self) -> int:
        return self.viclip.config.num_frames

    def embed_videos(self, clips: list[np.ndarray]) -> np.ndarray:
        """ViCLIP inputs (1, T, 3, S, S) each -> (N, D) float32 unit rows."""
        import torch

        assert self.viclip is not None
        with torch.inference_mode():
            out = [self.viclip.encode_video(torch.as_tensor(c).to(self.device)) for c in clips]
        return torch.cat(out).cpu().numpy().astype(np.float32)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Texts -> (N, D) float32 unit rows (32 tokens, truncated)."""
        import torch

        from storymem_cli.eval.tokenizer import tokenize

        assert self.viclip is not None
        with torch.inference_mode():
            emb = self.viclip.encode_text(tokenize(texts, self.context_length).to(self.device))
        return emb.cpu().numpy().astype(np.float32)


def tiny_metric_models(metrics: set[str], device: str = "cpu") -> MetricModels:
    """Random-weight ViCLIP and LAION predictor from a fixed seed, for CPU smoke runs and tests."""
    import torch

    from storymem_cli.eval.viclip import ViCLIP, ViCLIPConfig

    models = MetricModels(kind="tiny", device=device)
    if metrics & VICLIP_METRICS:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_SEED)
            models.viclip = ViCLIP(ViCLIPConfig.tiny()).to(device).eval()
        models.sources["viclip"] = f"random tiny ViCLIP (seed {TINY_SEED})"
    if "aesthetic" in metrics:
        from storymem_cli.scoring.laion import LaionAesthetic

        models.aesthetic = LaionAesthetic.tiny(seed=TINY_SEED, device=device)
        models.sources["aesthetic"] = f"random tiny CLIP + LAION head (seed {TINY_SEED})"
    return models


def resolve_device(device: str) -> str:
    """``auto``: CUDA when torch sees a GPU, else the CPU; anything else as given."""
    from storymem_cli.models.runtime import default_device

    return device if device != "auto" else default_device()


def load_metric_models(
    metrics: set[str],
    *,
    viclip: str | os.PathLike[str] | None = None,
    clip_l: str | os.PathLike[str] | None = None,
    aesthetic_head: str | os.PathLike[str] | None = None,
    device: str = "cpu",
) -> MetricModels:
    """The published metric models for `metrics`; MissingWeightsError lists every missing file.
    Every file is found (cache first, no download without network) before torch is imported."""
    missing: list[str] = []
    viclip_path = None
    if metrics & VICLIP_METRICS:
        viclip_path = find_viclip(viclip)
        if viclip_path is None:
            where = f"{viclip} does not exist" if viclip is not None else "not in the Hugging Face cache or ~/.cache/vbench"
            missing.append(f"ViCLIP {VICLIP_FILE} ({where}): {VICLIP_HINT}")

    head = checkpoint = None
    if "aesthetic" in metrics:
        from storymem_cli.scoring.laion import LaionAesthetic

        try:
            head = LaionAesthetic.find_head(aesthetic_head)
        except MissingWeightsError as err:
            missing.append(f"{err.message}: {err.hint}" if err.hint else err.message)
        checkpoint, clip_missing = _find_clip(clip_l)
        missing += clip_missing

    if missing:
        raise MissingWeightsError(
            "metric weights missing:\n  - " + "\n  - ".join(missing),
            hint="or pick metrics you have weights for with --metrics (e.g. --metrics aesthetic), "
            "or try the command without weights with --models tiny",
        )
    from storymem_cli.eval.viclip_loader import load_viclip

    device = resolve_device(device)
    aesthetic = None
    if head is not None and checkpoint is not None:
        aesthetic = LaionAesthetic.load(clip_pretrained=checkpoint, head=head, device=device)
    models = MetricModels(kind="real", aesthetic=aesthetic, device=device)
    if aesthetic is not None:
        models.sources["aesthetic"] = f"LAION v1 head on CLIP ViT-L/14 ({clip_l or 'openai'})"
    if viclip_path is not None:
        models.viclip = load_viclip(viclip_path, device=device)
        models.sources["viclip"] = str(viclip_path)
    return models
