"""``--offload group``: diffusers' block-level group offloading, overlapped with compute on CUDA streams.

Without streams every block's weights are copied to the GPU when the block is called and the forward
waits for them (+33 minutes a story measured on an H200, benchmarks/gpu_check.py). With
``use_stream=True`` diffusers copies the next block on a side stream while the current one computes,
and ``record_stream=True`` lets it free a block's copy without a synchronisation. The copies come
from pinned host memory, and diffusers pins a copy of every offloaded weight up front: an A14B pair
and its text encoder are ~68 GB of pinned RAM more. When that does not fit in the RAM available now
(with the margin that models/residency.py keeps), the experts are offloaded without streams, as
before, and a warning says why.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from storymem_cli.models.residency import KEEP_MARGIN, PoolMemory, fits, host_memory, module_bytes


@dataclass(frozen=True)
class StreamDecision:
    use_stream: bool
    reason: str  # for run.json and the warning

    def as_dict(self) -> dict[str, Any]:
        return {"streams": self.use_stream, "why": self.reason}


def decide_streams(device_type: str, pinned_bytes: int, host: PoolMemory | None) -> StreamDecision:
    """Streams where they can run (CUDA) and the pinned copies fit in the host's available RAM."""
    gib = pinned_bytes / 2**30
    if device_type != "cuda":
        return StreamDecision(False, f"streams need a CUDA device, not {device_type}")
    if host is None:
        return StreamDecision(False, f"the available RAM could not be read to pin {gib:.1f} GiB")
    margin = int(KEEP_MARGIN * host.total)
    if not fits(pinned_bytes, host.free, margin):
        return StreamDecision(
            False,
            f"pinning the offloaded weights needs {gib:.1f} GiB of RAM, {host.free / 2**30:.1f} GiB is available "
            f"(keeping {margin / 2**30:.1f} GiB free)",
        )
    return StreamDecision(True, f"{gib:.1f} GiB of weights pinned in RAM, {host.free / 2**30:.1f} GiB was available")


def enable_group_offload(pipe: Any, device: Any, exclude: list[str]) -> StreamDecision:
    """Block by block, one block per group, every component but ``exclude`` (already offloaded)."""
    import torch

    offloaded = [m for name, m in pipe.components.items() if isinstance(m, torch.nn.Module) and name not in exclude]
    decision = decide_streams(device.type, module_bytes(*offloaded), host_memory())
    if not decision.use_stream and device.type == "cuda":
        warnings.warn(f"--offload group without CUDA streams (slower): {decision.reason}", stacklevel=2)
    pipe.enable_group_offload(
        onload_device=device,
        offload_device=torch.device("cpu"),
        offload_type="block_level",
        num_blocks_per_group=1,
        exclude_modules=exclude,
        use_stream=decision.use_stream,
        record_stream=decision.use_stream,
    )
    return decision
