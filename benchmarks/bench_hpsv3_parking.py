"""GPU memory the video model sees while HPSv3 is loaded: parked (default) versus left on the GPU.

Renders a 3-shot story with the tiny model and a stand-in for HPSv3: a reward model that is one
tensor of ``--gb`` GiB (the real one is ~17 GB) and whose rewards are all 4.0. Each generate call is measured with torch.cuda.max_memory_allocated (peak reset just
before it), and notes where the reward model was at that moment.

    PYTHONPATH=src python benchmarks/bench_hpsv3_parking.py --gb 4 [--device cuda]

With ``--device cpu`` (no GPU) it only reports where the reward model was: a smoke run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.memory import quality
from storymem_cli.memory.embed import load_embedder
from storymem_cli.render import components
from storymem_cli.scoring import hpsv3, hpsv3_files

STORY = {
    "story_name": "Parking",
    "scenes": [{"scene_num": 1, "video_prompts": ["a boat", "the boat turns", "gulls"], "cut": [True, False, True]}],
}


def fake_hpsv3(gib: float) -> None:
    class Weights(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blob = torch.nn.Parameter(torch.zeros(int(gib * 2**30) // 2, dtype=torch.float16), requires_grad=False)

    class FakeReward:
        def __init__(self) -> None:
            self.model = Weights()

        def to(self, device):
            self.model.to(device)
            return self

        def reward(self, images, prompts):
            return torch.full((len(images), 2), 4.0)

    found = hpsv3_files.HPSv3Files(checkpoint=Path("HPSv3.safetensors"), base=Path("."))
    hpsv3_files.locate_hpsv3 = lambda weights=None: found
    hpsv3.HPSv3Reward.load = staticmethod(lambda files, dtype=None: FakeReward())


def render(device: str, park: bool) -> list[dict]:
    calls: list[dict] = []
    cuda = device.startswith("cuda")
    real_load = components.load_model
    hpsv3.PARK_DEVICE = "cpu" if park else device
    quality._CACHE.clear()

    class Measured:
        def __init__(self, model):
            self.model = model

        def generate(self, request, progress=None):
            scorer = quality._CACHE[("hpsv3", device, "None|openai")][0]
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            frames = self.model.generate(request, progress=progress)
            calls.append({"peak_mib": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else float("nan"),
                          "scorer_on": str(next(scorer.reward.model.parameters()).device)})
            return frames

        def describe(self):
            return self.model.describe()

    components.load_model = lambda preset, settings: Measured(real_load(preset, settings))
    components.load_memory_parts = lambda s: (load_embedder(s.embedder, device=device),
                                              quality.load_scorer("hpsv3", device=device))
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "story.json"
        script.write_text(json.dumps(STORY))
        result = CliRunner().invoke(app, ["render", str(script), "-o", f"{tmp}/run", "--model", "tiny",
                                          "--aesthetic", "hpsv3", "--device", device])
        if result.exit_code != 0:
            raise SystemExit(result.output)
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=4.0, help="size of the stand-in reward model (GiB)")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: pass --device cpu for a smoke run (no memory figures)")
    fake_hpsv3(args.gb)
    for park in (True, False):
        calls = render(args.device, park)
        peak = max(c["peak_mib"] for c in calls)
        print(f"{'parked on the CPU' if park else 'left on the GPU':18s} peak during generate {peak:9.1f} MiB; "
              f"reward model during generate: {sorted({c['scorer_on'] for c in calls})}")


if __name__ == "__main__":
    main()
