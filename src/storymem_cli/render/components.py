"""The heavy parts a render needs, loaded once and reused across the stories of a batch.

The story model (transformers, VAE, text encoder, LoRAs) and the memory parts
(frame embedder, quality scorer) take seconds on the tiny preset and minutes on
A14B: a batch loads each once, and again only if a story asks for different
settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storymem_cli.errors import InvalidInputError, MissingHardwareError, StorymemError
from storymem_cli.render.settings import RenderSettings


@dataclass
class Components:
    model: Any
    embedder: Any | None  # None with --no-memory: nothing is extracted
    scorer: Any | None


def _model_key(preset: Any, settings: RenderSettings) -> tuple:
    """What the loaded model depends on: the model and everything passed to the registry."""
    from storymem_cli.render.runtime import model_options

    return (settings.model, model_options(settings).model_dump_json())


def _memory_key(settings: RenderSettings) -> tuple:
    return (settings.embedder, settings.memory.aesthetic, settings.memory.aesthetic_threshold, settings.runtime.device)


def load_model(preset: Any, settings: RenderSettings) -> Any:
    import pickle

    import diffusers  # noqa: F401  imported first so that quiet_libraries reaches its loading bars

    from storymem_cli.models.registry import load_story_model
    from storymem_cli.models.safe_load import refusal
    from storymem_cli.quiet import quiet_libraries
    from storymem_cli.render.parallel import announce, lead
    from storymem_cli.render.runtime import model_options

    quiet_libraries()  # diffusers' loading bars have no environment variable, only a call
    announce(preset, settings)  # under torchrun: the other ranks load theirs at the same time
    try:
        return lead(load_story_model(preset, model_options(settings)), preset, settings)
    except (pickle.UnpicklingError, OSError, ValueError, RuntimeError) as err:
        # diffusers wraps torch's refusal (and its advice to pass weights_only=False, which would
        # run the file's code) in its own OSError: ours says what happened instead.
        refused = refusal(err, f"a weight file of model {settings.model}")
        if refused is None:
            raise
        raise refused from None


def load_memory_parts(settings: RenderSettings) -> tuple[Any, Any]:
    from storymem_cli.memory.embed import load_embedder
    from storymem_cli.memory.quality import load_scorer
    from storymem_cli.models.runtime import default_device

    # The memory parts run beside the model: on --device when given.
    device = settings.runtime.device or default_device()
    embedder = load_embedder(settings.embedder, device=device)
    scorer = load_scorer(settings.memory.aesthetic, settings.memory.aesthetic_threshold, device)
    return embedder, scorer


@dataclass
class ComponentCache:
    """Keeps the last loaded model and memory parts; reloads only what the settings change."""

    _model: tuple[tuple, Any] | None = None
    _memory: tuple[tuple, tuple[Any, Any]] | None = None
    loads: dict[str, int] = field(default_factory=lambda: {"model": 0, "memory": 0})

    def get(self, preset: Any, settings: RenderSettings) -> Components:
        # Memory parts first: HPSv3 is built on its device and then parked on the CPU
        # (scoring/hpsv3.py), so its 17 GB are never on the GPU next to the experts.
        embedder = scorer = None
        if settings.use_memory:
            mkey = _memory_key(settings)
            if self._memory is None or self._memory[0] != mkey:
                self._memory = (mkey, load_memory_parts(settings))
                self.loads["memory"] += 1
            embedder, scorer = self._memory[1]
        key = _model_key(preset, settings)
        if self._model is None or self._model[0] != key:
            self._model = None  # free the old model before loading the next one
            self._model = (key, load_model(preset, settings))
            self.loads["model"] += 1
        return Components(model=self._model[1], embedder=embedder, scorer=scorer)


def cuda_out_of_memory(err: BaseException) -> StorymemError | None:
    """A clear error for CUDA OOM, or None if ``err`` is something else."""
    import torch

    if isinstance(err, torch.OutOfMemoryError) or "CUDA out of memory" in str(err):
        return MissingHardwareError(
            "the GPU ran out of memory while generating a shot",
            hint="pass --offload model (one component on the GPU at a time) or --offload group (block by block, "
            "least memory), or a smaller --size / fewer --frames; "
            "finished shots are kept, so the same command resumes",
        )
    return None
