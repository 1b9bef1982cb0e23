"""Is there a CUDA GPU for torch? Answered without importing torch where the answer is certain.

``--model auto`` picks the model by this answer, and ``render --dry-run`` (which loads no model)
should not spend seconds importing torch to get it. Certain without torch: a torch build without
CUDA (its ``torch/version.py`` says ``cuda = None``), and on Linux a machine whose NVIDIA driver
lists no GPU (``/proc/driver/nvidia/gpus``, read without initialising CUDA, so a later fork is
safe), or ``CUDA_VISIBLE_DEVICES`` that hides every GPU. Anything else (a GPU is listed, another
OS, a ROCm build) asks torch itself.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")
_CUDA_LINE = re.compile(r"^cuda\s*(?::[^=]*)?=\s*(?P<value>.+?)\s*$", re.MULTILINE)


def _torch_cuda_build() -> bool | None:
    """True for a CUDA build of torch, False for a CPU-only one, None when its version file says
    neither (not installed, another layout, a ROCm build)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        text = (Path(spec.submodule_search_locations[0]) / "version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    match = _CUDA_LINE.search(text)
    if match is None or re.search(r"^hip\s*(?::[^=]*)?=\s*['\"]", text, re.MULTILINE):
        return None
    return match["value"] != "None"


def _no_visible_gpu() -> bool:
    """True when the driver certainly gives this process no GPU; False when one may be there."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return True
    return sys.platform.startswith("linux") and not (NVIDIA_GPUS.is_dir() and any(NVIDIA_GPUS.iterdir()))


def cuda_available() -> bool:
    """``torch.cuda.is_available()``, importing torch only when the answer is not certain without it."""
    if "torch" not in sys.modules:
        build = _torch_cuda_build()
        if build is False or (build is True and _no_visible_gpu()):
            return False
    import torch

    return torch.cuda.is_available()
