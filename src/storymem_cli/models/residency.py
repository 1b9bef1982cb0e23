"""Whether a second pair of experts may stay loaded beside the first.

A story switches between the T2V pair and the M2V pair: once with memory, on nearly every shot with
``--no-memory`` (a cut is T2V, a continuation M2V), and at every story of a batch. A switch costs a
``from_pretrained`` of two experts (57 GB at A14B) and the LoRA fuse; keeping both pairs costs the
memory of the second. ``StoryModel`` keeps both when that memory is free, and otherwise releases one
pair before loading the other, as it always did. Both ways give the same frames.

Where the pair's bytes go: on the GPU without offloading; in RAM on the CPU and with ``--offload
model`` / ``group`` (there the experts wait in RAM between forwards).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

Pool = Literal["cuda", "host"]

# Share of the pool's total memory left free beside both pairs: for sequences longer than those of
# the shots measured so far (an M2V shot carries up to 10 memory latent frames more than the T2V
# first shot), allocator fragmentation, and other processes.
KEEP_MARGIN = 0.10


@dataclass(frozen=True)
class PoolMemory:
    """One memory pool as the render finds it, in bytes."""

    free: int  # what can be allocated now
    total: int
    working: int = 0  # the most the render has needed beyond what is resident now (measured on CUDA)

    def margin(self) -> int:
        return self.working + int(KEEP_MARGIN * self.total)


def fits(needed: int, free: int, margin: int) -> bool:
    """Whether ``needed`` bytes can be taken from ``free`` with ``margin`` bytes still left."""
    return needed + margin <= free


def pool_of(device_type: str, offload: str) -> Pool | None:
    """Where a pair's weights wait between forwards; None: a device whose free memory is not read here."""
    if device_type == "cpu" or offload != "none":
        return "host"
    return "cuda" if device_type == "cuda" else None


def module_bytes(*modules: Any) -> int:
    """Bytes of the modules' parameters and buffers as stored (float8 under ``--quantize fp8``)."""
    return sum(t.numel() * t.element_size() for m in modules for t in (*m.parameters(), *m.buffers()))


def _meminfo_kib(path: Path, keys: tuple[str, ...]) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in path.read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in keys:
            found[name] = int(rest.split()[0])
    return found


def _cgroup_room(root: Path) -> int | None:
    """What a cgroup v2 memory limit (a container, a Slurm job) still allows; None without a limit."""
    try:
        limit = (root / "memory.max").read_text().strip()
        current = int((root / "memory.current").read_text())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(int(limit) - current, 0)


def host_memory(meminfo: Path = Path("/proc/meminfo"), cgroup: Path = Path("/sys/fs/cgroup")) -> PoolMemory | None:
    """Available RAM: Linux's MemAvailable (it counts the page cache the kernel can drop), within the
    cgroup's limit if there is one; sysconf's free pages elsewhere; None where neither is readable."""
    try:
        kib = _meminfo_kib(meminfo, ("MemAvailable", "MemTotal"))
        free, total = kib["MemAvailable"] * 1024, kib["MemTotal"] * 1024
    except (OSError, KeyError, ValueError, IndexError):
        try:
            page = os.sysconf("SC_PAGE_SIZE")
            free, total = os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page
        except (AttributeError, OSError, ValueError):  # e.g. macOS has no SC_AVPHYS_PAGES
            return None
    room = _cgroup_room(cgroup)
    return PoolMemory(free=free if room is None else min(free, room), total=total)


def cuda_memory(device: torch.device) -> PoolMemory:
    """The GPU's free memory plus the blocks torch's allocator holds unused, and the render's working
    memory: its peak so far (activations, the VAE decode, a memory scorer brought onto the GPU) above
    what is allocated now."""
    import torch

    free, total = torch.cuda.mem_get_info(device)
    allocated = torch.cuda.memory_allocated(device)
    cached = torch.cuda.memory_reserved(device) - allocated
    working = max(torch.cuda.max_memory_reserved(device) - allocated, 0)
    return PoolMemory(free=free + cached, total=total, working=working)


def pool_memory(pool: Pool | None, device: torch.device) -> PoolMemory | None:
    if pool == "cuda":
        return cuda_memory(device)
    return host_memory() if pool == "host" else None


def room_for_pair(pair_bytes: int, device: torch.device, offload: str) -> bool:
    """Whether a pair of ``pair_bytes`` can be loaded beside the one already held."""
    memory = pool_memory(pool_of(device.type, offload), device)
    return memory is not None and fits(pair_bytes, memory.free, memory.margin())
