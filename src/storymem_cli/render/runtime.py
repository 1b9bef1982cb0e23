"""From the user's options to the model registry's inputs: preset, settings, model options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storymem_cli.render.settings import RenderOptions, RenderSettings, resolve_settings


def resolve_model(name: str) -> Any:
    """The ModelPreset for ``--model`` (auto, a preset name, or a local model folder)."""
    from storymem_cli.models.registry import resolve_preset

    return resolve_preset(name)


def settings_for(preset: Any, options: RenderOptions) -> RenderSettings:
    from storymem_cli.config import MemoryConfig
    from storymem_cli.models.runtime import auto_dtype, default_device

    auto = None
    if options.runtime.dtype != "auto":  # only then is the device asked for (it imports torch)
        device = options.runtime.device or default_device()
        if preset.text_encoder_dtype == preset.transformer_dtype:  # auto sets both; one name equals it only then
            auto = auto_dtype(preset.transformer_dtype, device)

    # A local model folder is named by its path, so that switching folders re-renders the story.
    named = options.model in ("auto", preset.name)
    return resolve_settings(
        options,
        model_name=preset.name if named else str(Path(options.model).expanduser().resolve()),
        video=preset.video,
        steps=preset.steps,
        memory=MemoryConfig(aesthetic=preset.memory.aesthetic),
        embedder=preset.memory.embedder,
        auto_dtype=auto,
    )


def model_options(settings: RenderSettings) -> Any:
    """What the model registry loads for ``settings``: how it runs (``settings.runtime`` as it is) and
    which LoRAs."""
    from storymem_cli.models.runtime import ModelOptions

    return ModelOptions(
        **settings.runtime.model_dump(),
        continuation=settings.continuation,
        lora=Path(settings.lora) if settings.lora else None,
        style_loras=[(Path(s.path), s.strength, s.expert, s.pair) for s in settings.style_loras],
    )


def describe_preset(preset: Any) -> str:
    """One line saying which model runs and what it is."""
    return f"{preset.name}: {preset.description}"
