"""``--attention auto``: the fastest attention kernel that runs here and matches SDPA, measured once per device.

Candidates besides PyTorch's SDPA (``native``): FlashAttention 3 (``_flash_3``, a separate build) and two
kernels from PyPI handed to diffusers' hub-kernel backends as local functions, so nothing is downloaded:
``flash-attn-4`` (CuTe DSL, pure Python; Hopper and Blackwell) as ``flash_4_hub`` and ``sageattention``
1.0.6 (Triton; int8 q and k) as ``sage_hub``. Each is run on a probe of Wan's attention shape against an
fp32 reference; a kernel qualifies when its error is within ``ERROR_FACTOR`` times SDPA's own (SDPA in the
same dtype), so a lossy kernel is never picked by auto (it can still be named: ``--attention sage_hub``).
The fastest qualifying kernel that beats SDPA wins; on a CPU, or when nothing qualifies, SDPA. The
measurement is kept in the cache folder per device, torch and kernel versions, and recorded in run.json.
PyTorch's own kernels are not candidates: SDPA already picks the best of them, and forcing one lost on
an H200 (one A14B expert forward at 48,360 tokens: SDPA 5.78 s, cuDNN 6.01 s, PyTorch's flash 8.05 s).
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

# A kernel's error against the fp32 reference may be this many times SDPA's own in the same dtype.
ERROR_FACTOR = 3.0
PROBE = (1, 4096, 40, 128)  # (batch, tokens, heads, head_dim): A14B's heads; 4,096 tokens keep the probe short
REPEATS = 3


@dataclass(frozen=True)
class LocalKernel:
    """A PyPI package's attention function given to one of diffusers' hub-kernel backends."""

    backend: str
    module: str
    function: str
    package: str  # what to pip install


LOCAL_KERNELS = (
    LocalKernel("flash_4_hub", "flash_attn.cute", "flash_attn_func", "flash-attn-4"),
    LocalKernel("sage_hub", "sageattention", "sageattn", "sageattention==1.0.6"),
)
CANDIDATES = ("_flash_3", *(k.backend for k in LOCAL_KERNELS))  # tried by auto besides SDPA ("native")


@dataclass(frozen=True)
class Measurement:
    backend: str
    seconds: float | None = None  # median of REPEATS calls on the probe
    error: float | None = None  # relative RMS error against the fp32 reference
    unavailable: str | None = None  # why it did not run here


def register_local_kernel(backend: str) -> str | None:
    """Give diffusers the installed package's function for ``backend`` (nothing to do for other
    backends); the reason it cannot be used, or None."""
    kernel = next((k for k in LOCAL_KERNELS if k.backend == backend), None)
    if kernel is None:
        return None
    try:
        function = getattr(importlib.import_module(kernel.module), kernel.function)
    except Exception as err:  # noqa: BLE001  not installed, or built for another torch / GPU
        return f"{kernel.package} not usable: {type(err).__name__}: {err}"[:300]
    from diffusers.models.attention_dispatch import (
        _HUB_KERNELS_REGISTRY,
        AttentionBackendName,
        _check_attention_backend_requirements,
    )

    try:  # diffusers asks for the `kernels` package for every hub backend, even one given its function
        _check_attention_backend_requirements(AttentionBackendName(backend))
    except RuntimeError as err:
        return str(err)[:300]
    _HUB_KERNELS_REGISTRY[AttentionBackendName(backend)].kernel_fn = function
    return None


def choose(measured: list[Measurement], sdpa: Measurement, factor: float = ERROR_FACTOR) -> tuple[str, str]:
    """The backend auto uses and why: the fastest that ran, is within ``factor`` times SDPA's error
    and beats SDPA's time; else SDPA (``native``)."""
    if sdpa.seconds is None or sdpa.error is None:
        return "native", "SDPA was not measured"
    limit = max(sdpa.error * factor, 1e-6)
    fit = [m for m in measured if m.seconds is not None and m.error is not None and m.error <= limit]
    faster = sorted((m for m in fit if m.seconds < sdpa.seconds), key=lambda m: m.seconds)  # type: ignore[operator]
    if faster:
        best = faster[0]
        return best.backend, f"{best.backend} {best.seconds:.4f} s vs SDPA {sdpa.seconds:.4f} s, error {best.error:.2e} <= {limit:.2e}"
    return "native", f"no kernel both within error {limit:.2e} and faster than SDPA ({sdpa.seconds:.4f} s)"


REFERENCE_QUERIES = 2048  # the fp32 reference is computed for this many queries (against every key)


def measure(backend: str, device: Any, dtype: Any, shape: tuple[int, int, int, int] = PROBE) -> Measurement:
    """Time ``backend`` on (batch, tokens, heads, head_dim) inputs in ``dtype`` and compare its output for
    the first REFERENCE_QUERIES queries with fp32 SDPA on the same (rounded) inputs."""
    import torch
    from diffusers.models.attention_dispatch import dispatch_attention_fn

    problem = register_local_kernel(backend)
    if problem:
        return Measurement(backend, unavailable=problem)
    gen = torch.Generator(device=device).manual_seed(0)
    q, k, v = (torch.randn(*shape, generator=gen, device=device).to(dtype) for _ in range(3))
    n = min(shape[1], REFERENCE_QUERIES)
    exact = (t.float().transpose(1, 2) for t in (q[:, :n], k, v))
    reference = torch.nn.functional.scaled_dot_product_attention(*exact).transpose(1, 2)

    def call() -> Any:
        return dispatch_attention_fn(q, k, v, backend=backend)

    try:
        out = call()  # warm-up: kernels compiled or picked
        times = []
        for _ in range(REPEATS):
            _sync(device)
            start = time.perf_counter()
            call()
            _sync(device)
            times.append(time.perf_counter() - start)
    except Exception as err:  # noqa: BLE001  not for this GPU, dtype or shape: not usable here
        return Measurement(backend, unavailable=f"{type(err).__name__}: {err}"[:300])
    error = float((out[:, :n].float() - reference).pow(2).mean().sqrt() / reference.pow(2).mean().sqrt())
    return Measurement(backend, seconds=sorted(times)[len(times) // 2], error=error)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Pick:
    backend: str
    why: str
    measured: tuple[Measurement, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "why": self.why, "measured": [asdict(m) for m in self.measured]}


_PICKS: dict[str, Pick] = {}  # this process's picks, by device and dtype


def picked(device: Any, dtype: Any) -> Pick | None:
    """The pick auto made in this process (for run.json); None: auto was not asked for."""
    return _PICKS.get(f"{device}/{dtype}")


def pick_backend(device: Any, dtype: Any, measure_fn: Callable[..., Measurement] = measure,
                 cache: Any = None) -> Pick:  # fmt: skip
    """auto's choice on this device (SDPA on a CPU), measured once and kept in ``cache`` (a path;
    default: the cache folder)."""
    here = f"{device}/{dtype}"
    if here not in _PICKS:
        _PICKS[here] = _pick(device, dtype, measure_fn, cache)
    return _PICKS[here]


def _pick(device: Any, dtype: Any, measure_fn: Callable[..., Measurement], cache: Any) -> Pick:
    if device.type != "cuda":
        return Pick("native", f"auto picks among GPU kernels; on {device.type} SDPA")
    path, key = _cache_file(cache), _cache_key(device, dtype)
    known = _read(path)
    if key in known:
        entry = known[key]
        for backend in CANDIDATES:  # the chosen kernel's function must be handed to diffusers in this process too
            register_local_kernel(backend)
        return Pick(entry["backend"], entry["why"] + " (measured earlier on this device)",
                    tuple(Measurement(**m) for m in entry["measured"]))  # fmt: skip
    sdpa = measure_fn("native", device, dtype)
    measured = [measure_fn(backend, device, dtype) for backend in CANDIDATES]
    backend, why = choose(measured, sdpa)
    pick = Pick(backend, why, (sdpa, *measured))
    known[key] = pick.as_dict()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(known, indent=1), encoding="utf-8")
    except OSError:  # a read-only cache: measured again next time
        pass
    return pick


def _cache_file(cache: Any) -> Any:
    from pathlib import Path

    from storymem_cli.models.cache import cache_root

    return Path(cache) if cache is not None else cache_root() / "attention_pick.json"


def _cache_key(device: Any, dtype: Any) -> str:
    import torch

    from storymem_cli.models.story_model import installed_versions

    versions = installed_versions("torch", "diffusers", "flash-attn-4", "sageattention", "flash_attn_3")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return json.dumps({"device": name, "dtype": str(dtype), **versions}, sort_keys=True)


def _read(path: Any) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
