"""``--device`` of every command checked the same way: a torch device this machine has.

render checks it before any story starts, train before the dataset is read, so that a wrong
device is named with its option instead of failing in the middle of torch.
"""

from __future__ import annotations

from storymem_cli.errors import InvalidInputError

# Attention backends that run on a CPU; the others need a GPU (CUDA kernels, NPU, XLA).
CPU_ATTENTION = ("auto", "native", "_native_math", "flex")


def check_device(device: str | None, option: str = "--device", *, what: str = "storymem") -> None:
    """Refuse a device string torch cannot parse, or a device this machine does not have."""
    import torch

    if device is None:
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise InvalidInputError(f"{option} {device!r} is not a torch device", hint="e.g. cpu, cuda, cuda:1") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (parsed.index or 0) >= count:
            have = f"{count} CUDA GPU(s) (cuda:0 to cuda:{count - 1})" if count else "no CUDA GPU"
            raise InvalidInputError(f"{option} {device}: this machine has {have}", hint=f"use {option} cpu, or leave {option} out")
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise InvalidInputError(f"{option} {device}: this machine has no Apple GPU (MPS)", hint=f"use {option} cpu")
    elif parsed.type == "xpu":
        if not (hasattr(torch, "xpu") and torch.xpu.is_available()):
            raise InvalidInputError(f"{option} {device}: this machine has no Intel GPU (XPU)", hint=f"use {option} cpu")
    elif parsed.type != "cpu":
        raise InvalidInputError(f"{option} {device}: {what} runs on cpu or cuda", hint=f"e.g. {option} cpu")


def check_attention_on(device: str | None, backend: str | None) -> None:
    """An ``--attention`` backend that needs a GPU, asked for on the CPU: refused before the model loads
    (torch would only say "No viable backend" at the first shot)."""
    import torch

    if not backend:
        return
    on_cpu = torch.device(device).type == "cpu" if device is not None else not torch.cuda.is_available()
    if on_cpu and backend.lower() not in CPU_ATTENTION:
        raise InvalidInputError(
            f"--attention {backend}: this backend needs a GPU, and this render runs on the CPU",
            hint=f"on the CPU use one of {', '.join(CPU_ATTENTION)}, or leave --attention out",
        )
