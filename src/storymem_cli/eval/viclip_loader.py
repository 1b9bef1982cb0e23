"""Strict loading of ViCLIP weights: the release `.pth` or a safetensors file.

The release file is ``torch.load(path)["model"]`` with 447 keys. We load it with
``weights_only=True`` (no pickled code runs) and refuse any file whose keys or shapes
differ from our module, naming the first offending keys, so a wrong or truncated file
can never silently yield a half-random model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from storymem_cli.errors import InvalidInputError

if TYPE_CHECKING:
    import torch

    from storymem_cli.eval.viclip import ViCLIP, ViCLIPConfig

_SHOWN = 5  # how many offending keys an error names


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ViCLIP checkpoint: `.safetensors` flat, anything else torch's `{"model": ...}`."""
    from storymem_cli.models.safe_load import safetensors_load, torch_load

    path = Path(path)
    hint = "pass ViClip-InternVid-10M-FLT.pth or a .safetensors export of it with --viclip"
    if path.suffix == ".safetensors":
        return safetensors_load(path, what="ViCLIP checkpoint", hint=hint)
    ckpt = torch_load(path, what="ViCLIP checkpoint", hint=hint)
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
        return ckpt["model"]
    raise InvalidInputError(
        f"{path}: expected a dict with the weights under 'model' (the ViCLIP release layout)",
        hint="pass ViClip-InternVid-10M-FLT.pth or a .safetensors export of it with --viclip",
    )


def check_state_dict(state: dict[str, torch.Tensor], model: ViCLIP, source: str) -> None:
    """Raise InvalidInputError naming missing keys, unexpected keys, or shape mismatches."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing key(s): {', '.join(missing[:_SHOWN])}" + (f" and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""))
    if extra:
        problems.append(f"unexpected key(s): {', '.join(extra[:_SHOWN])}" + (f" and {len(extra) - _SHOWN} more" if len(extra) > _SHOWN else ""))
    if shapes:
        problems.append(f"wrong shape(s): {'; '.join(shapes[:_SHOWN])}")
    if problems:
        raise InvalidInputError(
            f"{source}: does not match the ViCLIP layout ({len(expected)} keys): " + "; ".join(problems),
            hint="use the original ViClip-InternVid-10M-FLT.pth (Hugging Face OpenGVLab/ViCLIP)",
        )


def load_viclip(path: Path, config: ViCLIPConfig | None = None, device: str = "cpu") -> ViCLIP:
    """Build a ViCLIP of `config` (default: the published L/14) and load `path` into it strictly."""
    import torch

    from storymem_cli.eval.viclip import ViCLIP

    state = read_state_dict(Path(path))
    with torch.device("meta"):
        model = ViCLIP(config)
    check_state_dict(state, model, str(path))
    model.load_state_dict(state, strict=True, assign=True)
    return model.float().to(device).eval()


def save_viclip(model: ViCLIP, path: Path) -> None:
    """Write `model` in the release layout (`{"model": state_dict}`), or flat safetensors by suffix."""
    import torch

    path = Path(path)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({"model": state}, path)
