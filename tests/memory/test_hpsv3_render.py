"""HPSv3 on the tiny render path: built once, and on the CPU whenever the video model runs."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.memory.embed import load_embedder
from storymem_cli.memory.quality import load_scorer
from storymem_cli.render import components
from storymem_cli.scoring.downsize import release_size

STORY = {
    "story_name": "Harbour",
    "scenes": [
        {
            "scene_num": 1,
            "video_prompts": [
                "A boat leaves the harbour.",
                "The boat turns towards the lighthouse.",
                "Gulls over the pier.",
            ],
            "cut": [True, False, True],
        }
    ],
}
# Where the scorer computes. The fake reward model never allocates, so the name is all it needs:
# this checks the moves a GPU machine would make, on any machine.
SCORING_DEVICE = "cuda:0"


class WatchedModel:
    """The real tiny model; each generate call notes where the reward model is at that moment."""

    def __init__(self, model, log):
        self.model, self.log = model, log

    def generate(self, request, progress=None):
        self.log.events.append(("generate", self.log.reward.model.device))
        return self.model.generate(request, progress=progress)

    def describe(self):
        return self.model.describe()


def test_hpsv3_is_parked_on_the_cpu_while_the_experts_run(tmp_path, monkeypatch, fake_hpsv3):
    log = fake_hpsv3(mu=lambda n: torch.full((n,), 4.0))  # every frame passes 3.0
    real_load_model = components.load_model
    monkeypatch.setattr(components, "load_model", lambda preset, s: WatchedModel(real_load_model(preset, s), log))
    def memory_parts(settings):
        return load_embedder(settings.embedder), load_scorer("hpsv3", device=SCORING_DEVICE)

    monkeypatch.setattr(components, "load_memory_parts", memory_parts)
    script = tmp_path / "harbour.json"
    script.write_text(json.dumps(STORY), encoding="utf-8")
    result = CliRunner().invoke(
        app, ["render", str(script), "-o", str(tmp_path / "run"), "--model", "tiny", "--aesthetic", "hpsv3", "--json"]
    )
    assert result.exit_code == 0, result.output

    assert log.loads == 1  # loaded once for the whole story
    kinds = [kind for kind, _ in log.events]
    assert kinds.count("generate") == 3 and kinds[0] == "generate" and "score" in kinds
    for kind, device in log.events:
        assert device == ("cpu" if kind == "generate" else SCORING_DEVICE), log.events
    assert log.reward.model.device == "cpu"  # and parked after the last shot

    run = json.loads((tmp_path / "run" / "run.json").read_text())
    frames = sum(shot["trimmed_frames"] for shot in run["shots"])
    height, width = run["settings"]["video"]["height"], run["settings"]["video"]["width"]
    assert log.prompts == [""] * frames  # never the shot prompt
    small_h, small_w = release_size(height, width)
    assert log.sizes == [(small_w, small_h)] * frames
