"""One story on several processes: ``torchrun --nproc-per-node N -m storymem_cli render ...``.

Rank 0 renders exactly as one process does: it plans, reads and writes the run folder, keeps the memory
bank, decodes with the VAE and writes the videos. Before it loads a model it tells the other ranks which
one, so that all ranks load at once; before each shot it sends the shot's request (prompt, seed, memory
images, first frames, sizes) and its settings to the other ranks; they run the same denoising, so each
transformer forward is split over all ranks by diffusers' context parallelism (models/parallel.py), and
they stop before decoding. The other ranks never touch the run folder, so a crash of any rank leaves it
as a one-process crash does: resumable by running the same command again, with any number of processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from storymem_cli.errors import InvalidInputError

# A rank waits in a collective while rank 0 decodes, writes mp4s and scores keyframes (seconds to a
# minute at A14B sizes), and rank 0 while another rank loads its experts (minutes from a slow disk).
COLLECTIVE_TIMEOUT = timedelta(minutes=60)

_LAUNCH: Launch | None = None  # set by start(), for lead()


@dataclass(frozen=True)
class Launch:
    """What torchrun (or Slurm via torchrun) told this process."""

    rank: int
    world: int
    local_rank: int

    @property
    def leader(self) -> bool:
        return self.rank == 0


def launch_from_env(env: dict[str, str] | None = None) -> Launch | None:
    """The torchrun launch this process is part of; None for a single process (no WORLD_SIZE, or 1)."""
    env = os.environ if env is None else env
    world = int(env.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return Launch(rank=int(env["RANK"]), world=world, local_rank=int(env.get("LOCAL_RANK", env["RANK"])))


def check_options(launch: Launch, device: str | None, offload: str, cache: str, calibrate: Any = None) -> None:
    """Options that cannot be combined with several processes, refused before anything loads."""
    if device is not None and device not in ("cpu", "cuda"):
        raise InvalidInputError(
            f"--device {device}: under torchrun each process takes its own GPU (cuda:LOCAL_RANK)",
            hint="leave --device out (or pass --device cuda, or --device cpu for a CPU test run)",
        )
    if offload != "none":  # diffusers' offloading hooks and context-parallel hooks conflict (diffusers #12533)
        raise InvalidInputError(f"--offload {offload} cannot be combined with {launch.world} processes",
                                hint="leave --offload out: each GPU holds both experts")  # fmt: skip
    # Each rank would decide on its own share of tokens whether to skip a step. (MagCache decides from its
    # curve alone, but its residual is taken around diffusers' sequence split: not verified yet.)
    if cache != "none":
        raise InvalidInputError(f"--cache {cache} cannot be combined with {launch.world} processes",
                                hint="leave --cache out, or render on one GPU")  # fmt: skip
    if calibrate is not None:  # every rank would write the file, each from its share of the tokens
        raise InvalidInputError(f"--magcache-calibrate cannot be combined with {launch.world} processes",
                                hint="calibrate in a single process")  # fmt: skip


def check_size(launch: Launch, settings: Any) -> None:
    """The render size splits evenly over the processes (before any model loads)."""
    from storymem_cli.models.parallel import check_sequence_split

    check_sequence_split(launch.world, settings.video.width, settings.video.height)


def start(launch: Launch, device: str | None, mode: str) -> None:
    """Join the process group: NCCL on GPUs (rank i on cuda:LOCAL_RANK), gloo on the CPU."""
    import torch
    import torch.distributed as dist

    from storymem_cli.models import parallel

    global _LAUNCH
    _LAUNCH = launch
    on_gpu = device != "cpu" and torch.cuda.is_available()
    if on_gpu:
        # "cuda" without an index is the current device: every later "cuda" in this process means this GPU.
        torch.cuda.set_device(launch.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if on_gpu else "gloo", timeout=COLLECTIVE_TIMEOUT)
    parallel.activate(launch.world, mode, "cuda" if on_gpu else "cpu")  # type: ignore[arg-type]


def finish(launch: Launch) -> None:
    """Rank 0: tell the other ranks there is nothing more to render. Every rank: leave the group."""
    import torch.distributed as dist

    from storymem_cli.models import parallel

    global _LAUNCH
    if launch.leader:
        try:
            _send(None)
        except RuntimeError:  # a rank is gone (torch's DistBackendError): torchrun stops the others
            pass
    _LAUNCH = None
    parallel.deactivate()
    dist.destroy_process_group()


def _send(message: Any) -> None:
    import torch.distributed as dist

    dist.broadcast_object_list([message], src=0)


def _receive() -> Any:
    import torch.distributed as dist

    box: list[Any] = [None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class LeaderModel:
    """Rank 0's story model: each shot's request goes to the other ranks before it is generated."""

    def __init__(self, model: Any, preset: Any, settings: Any):
        self.model, self.preset, self.settings = model, preset, settings

    def generate(self, request: Any, progress: Any = None) -> Any:
        _send((self.preset, self.settings, request))
        return self.model.generate(request, progress=progress)

    def describe(self) -> dict[str, Any]:
        from storymem_cli.models.parallel import active_degrees, world_size

        degrees = active_degrees()
        # Before the first shot no expert is parallel yet: the world size is known, the split not.
        parallel = degrees.as_dict() if degrees else {"world_size": world_size()}
        return {**self.model.describe(), "parallel": {**parallel, "backend": "context parallel (diffusers)"}}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def announce(preset: Any, settings: Any) -> None:
    """Rank 0, about to load a model: the other ranks load theirs now, beside it, instead of when the
    first shot arrives (then rank 0 would wait one whole model load for them). Nothing in one process."""
    if _LAUNCH is not None and _LAUNCH.leader:
        _send((preset, settings, None))


def lead(model: Any, preset: Any, settings: Any) -> Any:
    """The model rank 0 renders with: ``model`` itself in a single process."""
    return LeaderModel(model, preset, settings) if _LAUNCH is not None and _LAUNCH.leader else model


def follow() -> int:
    """Ranks 1..N-1: load the model rank 0 announces, generate every shot it sends, undecoded, until it
    says stop; returns the shot count."""
    from storymem_cli.models.registry import load_story_model
    from storymem_cli.render.runtime import model_options

    # While rank 0 plans: the model code (diffusers' and transformers' Wan classes, seconds of imports),
    # so that its announcement finds this rank ready to load.
    import storymem_cli.pipeline.m2v  # noqa: F401
    import storymem_cli.pipeline.t2v  # noqa: F401
    from transformers import UMT5EncoderModel  # noqa: F401

    loaded: tuple[Any, Any] | None = None
    shots = 0
    while (message := _receive()) is not None:
        preset, settings, request = message
        key = (preset.model_dump_json(), settings.model_dump_json())
        if loaded is None or loaded[0] != key:
            loaded = None  # free the old model before loading the next one
            loaded = (key, load_story_model(preset, model_options(settings)))
        if request is None:  # announce(): only the load
            continue
        loaded[1].generate(request, decode=False)
        shots += 1
    return shots
