"""LAION aesthetic predictor v1: CLIP ViT-L/14 image features -> Linear(768, 1).

Used twice: as an optional keyframe quality filter (memory/quality.py) and as
ST-Bench's aesthetic metric (eval; it divides by 10). The recipe is VBench's
(SPEC 9): every frame, short side to 224 bicubic, centre crop 224, /255, CLIP
mean/std, fp32 features L2-normalised, then the linear head. ``score`` returns
the raw head output on LAION's 0-10 scale.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from storymem_cli.errors import MissingWeightsError
from storymem_cli.scoring.clip import build_clip_visual, embed_images, resolve_clip_checkpoint

if TYPE_CHECKING:
    import torch

CLIP_MODEL = "ViT-L-14-quickgelu"  # OpenAI CLIP ViT-L/14 (QuickGELU), as VBench uses
HEAD_FILE = "sa_0_4_vit_l_14_linear.pth"  # LAION aesthetic v1 linear head, 4 KB
HEAD_URL = "https://github.com/LAION-AI/aesthetic-predictor/raw/main/sa_0_4_vit_l_14_linear.pth"
TINY_CLIP_MODEL = "tiny-clip"


def default_head_paths() -> list[Path]:
    """Where ``load(head=None)`` looks: our cache, then VBench's (users of VBench already have it)."""
    home = Path.home()
    cache = Path(os.environ.get("XDG_CACHE_HOME", home / ".cache"))
    return [cache / "storymem" / HEAD_FILE, home / ".cache" / "vbench" / "aesthetic_model" / "emb_reader" / HEAD_FILE]


def _load_head(path: Path, in_features: int) -> torch.nn.Linear:
    import torch

    from storymem_cli.models.safe_load import refusal

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle / zip errors: the file is not a torch state dict
        refused = refusal(err, path, hint=f"download {HEAD_FILE} again from {HEAD_URL}")
        if refused is not None:
            raise refused from None
        raise MissingWeightsError(
            f"LAION aesthetic head {path} could not be read ({type(err).__name__})",
            hint=f"download {HEAD_FILE} again from {HEAD_URL}",
        ) from None
    weight = state.get("weight") if isinstance(state, dict) else None
    bias = state.get("bias") if isinstance(state, dict) else None
    if weight is None or bias is None or tuple(weight.shape) != (1, in_features) or bias.numel() != 1:
        raise MissingWeightsError(
            f"{path} is not a LAION aesthetic linear head (expected weight (1, {in_features}) and bias (1,))",
            hint=f"the v1 head for CLIP ViT-L/14 is {HEAD_FILE}: {HEAD_URL}",
        )
    head = torch.nn.Linear(in_features, 1)
    head.load_state_dict({"weight": weight.float(), "bias": bias.float().reshape(1)})
    return head.eval().requires_grad_(False)


class LaionAesthetic:
    """CLIP image tower + linear head. Build with :meth:`load` (real) or :meth:`tiny` (tests)."""

    def __init__(self, visual: torch.nn.Module, head: torch.nn.Linear, *, name: str, batch_size: int = 32):
        self.visual = visual
        self.head = head.to(next(visual.parameters()).device)
        self.name = name
        self.batch_size = batch_size

    @classmethod
    def load(
        cls,
        clip_pretrained: str | os.PathLike[str] = "openai",
        head: str | os.PathLike[str] | None = None,
        device: str = "cpu",
    ) -> LaionAesthetic:
        """Real model: ``clip_pretrained`` is an open_clip tag, a checkpoint file or a folder;
        ``head`` the path of ``sa_0_4_vit_l_14_linear.pth`` (None: look in :func:`default_head_paths`)."""
        head_path = cls.find_head(head)
        checkpoint = resolve_clip_checkpoint(CLIP_MODEL, clip_pretrained, what="LAION aesthetic (CLIP ViT-L/14)")
        visual = build_clip_visual(CLIP_MODEL, checkpoint, device=device)
        return cls(visual, _load_head(head_path, visual.output_dim), name="laion-aesthetic-v1")

    @classmethod
    def tiny(cls, seed: int = 0, device: str = "cpu") -> LaionAesthetic:
        """Random tiny CLIP + random head from ``seed``: same code path, for tests."""
        import torch

        visual = build_clip_visual(TINY_CLIP_MODEL, None, seed=seed, device=device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            head = torch.nn.Linear(visual.output_dim, 1).eval().requires_grad_(False)
        return cls(visual, head, name="laion-tiny")

    @staticmethod
    def find_head(head: str | os.PathLike[str] | None) -> Path:
        if head is not None:
            path = Path(head).expanduser()
            if not path.is_file():
                raise MissingWeightsError(
                    f"LAION aesthetic head not found: {path}", hint=f"download {HEAD_FILE} from {HEAD_URL}"
                )
            return path
        for path in default_head_paths():
            if path.is_file():
                return path
        first = default_head_paths()[0]
        raise MissingWeightsError(
            f"LAION aesthetic head {HEAD_FILE} is not on this machine",
            hint=f"download it: curl -L --create-dirs -o {first} {HEAD_URL}  (or pass its path)",
        )

    def score(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames (N, H, W, 3) -> float32 (N,) raw head output (LAION 0-10 scale)."""
        import torch

        feats = embed_images(self.visual, frames, batch_size=self.batch_size, normalize=True, resize="crop")
        if len(feats) == 0:
            return np.zeros((0,), dtype=np.float32)
        with torch.inference_mode():
            x = torch.from_numpy(feats).to(self.head.weight.device)
            return self.head(x).squeeze(-1).float().cpu().numpy()
