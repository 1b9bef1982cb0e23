"""What rank 0 tells the other ranks under torchrun (render/parallel.py), without a process group: the
model to load goes out before rank 0 loads its own, so every rank loads at once instead of rank 0
waiting one whole model load when it sends the first shot."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from storymem_cli.models import registry
from storymem_cli.render import components, parallel


@pytest.fixture
def leader(monkeypatch):
    """This process as rank 0 of 2; what it sends is recorded instead of broadcast."""
    sent: list = []
    monkeypatch.setattr(parallel, "_LAUNCH", parallel.Launch(rank=0, world=2, local_rank=0))
    monkeypatch.setattr(parallel, "_send", sent.append)
    return sent


def test_rank_0_names_the_model_before_it_loads_its_own(leader, monkeypatch):
    preset, settings = SimpleNamespace(name="tiny"), SimpleNamespace(model="tiny")
    monkeypatch.setattr(registry, "load_story_model", lambda *a: leader.append("rank 0 loads") or SimpleNamespace())
    monkeypatch.setattr("storymem_cli.render.runtime.model_options", lambda s: s)

    model = components.load_model(preset, settings)
    assert leader == [(preset, settings, None), "rank 0 loads"]
    request = SimpleNamespace(prompt="a heron")
    monkeypatch.setattr(model.model, "generate", lambda r, progress=None: "frames", raising=False)
    assert model.generate(request) == "frames"
    assert leader[-1] == (preset, settings, request)


def test_one_process_sends_nothing(monkeypatch):
    sent: list = []
    monkeypatch.setattr(parallel, "_LAUNCH", None)
    monkeypatch.setattr(parallel, "_send", sent.append)
    parallel.announce(SimpleNamespace(), SimpleNamespace())
    assert sent == []


def test_a_follower_loads_on_the_announcement_and_once_per_model(monkeypatch):
    def dumped(text: str):  # a preset or settings model, as follow() keys them
        return SimpleNamespace(model_dump_json=lambda: text)

    tiny, toy, a, b = dumped("tiny"), dumped("toy"), dumped("a"), dumped("b")
    messages = [(tiny, a, None), (tiny, a, "shot 1"), (tiny, a, "shot 2"), (toy, b, None), (toy, b, "shot 3"), None]
    events: list = []

    class Model:
        def __init__(self, name):
            self.name = name

        def generate(self, request, decode=True):
            assert decode is False  # rank 0 alone decodes
            events.append(f"{self.name}: {request}")

    monkeypatch.setattr(parallel, "_receive", lambda: messages.pop(0))
    monkeypatch.setattr(registry, "load_story_model", lambda preset, options: events.append(f"load {preset.model_dump_json()}") or Model(preset.model_dump_json()))  # fmt: skip
    monkeypatch.setattr("storymem_cli.render.runtime.model_options", lambda s: s)

    assert parallel.follow() == 3
    assert events == ["load tiny", "tiny: shot 1", "tiny: shot 2", "load toy", "toy: shot 3"]
