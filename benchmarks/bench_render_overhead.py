"""Share of a story render's wall time spent outside the denoising loop.

Renders a story with the tiny model (default: examples/paper_boat.json, 10 shots)
and splits the wall time into:

  model load      load_story_model + the memory embedder/scorer (once per process)
  denoise loop    the diffusion steps inside model.generate (timed from its step callbacks:
                  mean step time x steps)
  generate, rest  the rest of model.generate: text encoding, VAE encode of memory and
                  first frames, VAE decode, pipeline switches
  renderer        everything else: planning, memory view, trimming, clip + tail writing,
                  keyframe extraction and bank saves, run.json, joining story.mp4

The renderer's own share is what this area controls; the tiny model makes it look
large (its denoising is milliseconds), so track it as the model grows. The heavy
imports (torch, diffusers, transformers, open_clip) are done and timed before the
render starts and reported on their own line: whichever part of the render first
touched them used to be charged for them.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_render_overhead.py [SCRIPT] [--frames N] [--steps N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from storymem_cli.render import components
from storymem_cli.render.batch import StoryJob
from storymem_cli.render.session import RenderSession
from storymem_cli.render.settings import RenderOptions

ROOT = Path(__file__).resolve().parents[1]


class TimedModel:
    """The real model; records per generate call its wall time and its step callback times."""

    def __init__(self, model: Any):
        self.model = model
        self.calls: list[dict[str, Any]] = []

    def generate(self, request: Any, progress: Any = None) -> Any:
        stamps: list[float] = []

        def on_step(step: int, total: int) -> None:
            stamps.append(time.perf_counter())
            if progress is not None:
                progress(step, total)

        start = time.perf_counter()
        frames = self.model.generate(request, progress=on_step)
        end = time.perf_counter()
        steps = len(stamps)
        # Step i ends at stamps[i]; the first step's start is not observable, so the loop is
        # estimated as the mean step time (from the gaps between callbacks) times the steps.
        mean_step = (stamps[-1] - stamps[0]) / (steps - 1) if steps > 1 else (stamps[0] - start if stamps else 0.0)
        self.calls.append({"mode": request.mode, "wall": end - start, "loop": min(mean_step * steps, end - start)})
        return frames

    def describe(self) -> dict[str, Any]:
        return self.model.describe()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("script", nargs="?", default=str(ROOT / "examples" / "paper_boat.json"))
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()

    start = time.perf_counter()
    import diffusers  # noqa: F401
    import open_clip  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401

    imports = time.perf_counter() - start
    timed: list[TimedModel] = []
    real_load = components.load_model
    real_memory = components.load_memory_parts
    load_time = {"model": 0.0, "memory": 0.0}

    def load_model(preset: Any, settings: Any) -> TimedModel:
        start = time.perf_counter()
        model = TimedModel(real_load(preset, settings))
        load_time["model"] += time.perf_counter() - start
        timed.append(model)
        return model

    def load_memory_parts(settings: Any) -> Any:
        start = time.perf_counter()
        parts = real_memory(settings)
        load_time["memory"] += time.perf_counter() - start
        return parts

    components.load_model = load_model
    components.load_memory_parts = load_memory_parts

    options = RenderOptions(model="tiny", frames=args.frames, steps=args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        session = RenderSession(options)
        result = session.render(StoryJob(Path(args.script), Path(tmp) / "run"))
        wall = time.perf_counter() - start
        record = json.loads((Path(tmp) / "run" / "run.json").read_text())

    calls = timed[0].calls
    loads = load_time["model"] + load_time["memory"]
    loop = sum(c["loop"] for c in calls)
    generate = sum(c["wall"] for c in calls)
    renderer = wall - loads - generate
    steady = wall - loads
    shots = record["shots"]
    per_shot = {key: sum(s["timings"][key] for s in shots) for key in ("prepare_s", "write_s", "memory_s")}

    print(f"story: {result['story']}  ({len(shots)} shots, {record['total_frames']} frames, "
          f"{record['settings']['video']['width']}x{record['settings']['video']['height']}, "
          f"{record['settings']['steps']} steps, model {record['settings']['model']})")  # fmt: skip
    print(f"imports (not in the wall) {imports:8.2f} s")
    print(f"wall time                 {wall:8.2f} s")
    print(f"  model + memory load     {loads:8.2f} s  {loads / wall:6.1%}")
    print(f"  denoise loop            {loop:8.2f} s  {loop / wall:6.1%}")
    print(f"  generate, outside loop  {generate - loop:8.2f} s  {(generate - loop) / wall:6.1%}")
    print(f"  renderer                {renderer:8.2f} s  {renderer / wall:6.1%}")
    print(f"    memory view           {per_shot['prepare_s']:8.2f} s")
    print(f"    clips + tails         {per_shot['write_s']:8.2f} s")
    print(f"    keyframes + bank      {per_shot['memory_s']:8.2f} s")
    other = renderer - sum(per_shot.values())
    print(f"    plan, run.json, join  {other:8.2f} s")
    print(f"share outside the denoising loop: {(wall - loop) / wall:.1%} of wall time, "
          f"{(steady - loop) / steady:.1%} without the one-off loads")  # fmt: skip
    print(f"renderer's own share (no loads): {renderer / steady:.1%}")


if __name__ == "__main__":
    main()
