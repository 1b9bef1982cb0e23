"""One ``storymem render`` invocation: the preset, the loaded parts and the progress, shared by its stories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storymem_cli.errors import InvalidInputError, MissingHardwareError
from storymem_cli.render.batch import StoryJob
from storymem_cli.render.components import ComponentCache
from storymem_cli.render.progress import NullProgress, RenderProgress
from storymem_cli.render.settings import RenderOptions, RenderSettings
from storymem_cli.render.story import StoryInputs, StoryRenderer


def load_story(path: Path) -> tuple[StoryInputs, list[Any]]:
    """Load and validate a script (no model involved); returns it with its warnings."""
    from storymem_cli.script import load_script

    if not path.is_file():
        raise InvalidInputError(f"{path}: no such script file", hint="check the path")
    script, warnings = load_script(path)
    return StoryInputs(script=script, path=path), list(warnings)


class RenderSession:
    def __init__(self, options: RenderOptions, *, progress: RenderProgress | None = None, restart: bool = False):
        from storymem_cli.render.runtime import resolve_model

        self.options = options
        self.progress = progress or NullProgress()
        self.restart = restart
        self.preset = resolve_model(options.model)
        self.components = ComponentCache()

    def check_device(self) -> None:
        """Refuse a device this machine does not have, and a real-size model without a CUDA GPU,
        before any story starts."""
        import torch

        from storymem_cli.models.devices import check_attention_on, check_device
        from storymem_cli.models.presets import A14B, TOY

        check_device(self.options.runtime.device)
        check_attention_on(self.options.runtime.device, self.options.runtime.attention_backend)

        if self.preset.name == A14B.name and not torch.cuda.is_available():
            weights = ", ".join(filter(None, (self.preset.i2v_source, self.preset.t2v_source, self.preset.lora_source)))
            raise MissingHardwareError(
                f"model {self.preset.name} needs a CUDA GPU (each of its experts is ~28.6 GB) and none is available; "
                f"on a GPU machine it loads {weights} (docs/models.md: download, GPU sizes, flags)",
                hint=f"on this machine, --model {TOY.name} renders stories written in its toy world's grammar "
                "(examples/toy_*.json) on the CPU",
            )

    def describe_model(self) -> str:
        from storymem_cli.render.runtime import describe_preset

        picked = " (picked by --model auto)" if self.options.model == "auto" else ""
        return f"{describe_preset(self.preset)}{picked}"

    def settings(self) -> RenderSettings:
        from storymem_cli.render.runtime import settings_for

        return settings_for(self.preset, self.options)

    def renderer(self, job: StoryJob) -> StoryRenderer:
        inputs, warnings = load_story(job.script)
        for warning in warnings:
            self.progress.note(f"warning: {job.script}: {warning.path}: {warning.message}")
        return StoryRenderer(
            inputs,
            self.settings(),
            self.preset,
            job.run_dir,
            components=self.components,
            progress=self.progress,
            restart=self.restart,
        )

    def render(self, job: StoryJob) -> dict[str, Any]:
        return self.renderer(job).render()

    def dry_run(self, job: StoryJob) -> dict[str, Any]:
        return self.renderer(job).dry_run()
