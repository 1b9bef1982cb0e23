"""Characters in a render: tagged keyframes, retrieval by who is in the shot, described prompts, and
the proof that a script without characters renders exactly as before."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.config import MemoryConfig, VideoConfig
from storymem_cli.render.settings import RenderOptions, resolve_settings

from .conftest import write_script

runner = CliRunner()

# Toy-world prompts (the toy model's grammar): the hero and the friend, each named by look first.
TOY_PROMPTS = [
    "a red triangle with glasses jumps up in the cave",
    "a blue circle with a hat grows bigger on the beach",
    "the hero hops to the right on the beach",
]
CAST = [
    {"name": "hero", "aliases": ["red triangle"], "description": "a red triangle with glasses"},
    {"name": "friend", "aliases": ["blue circle"], "description": "a blue circle with a hat"},
]
UNNAMED_CAST = [{"name": "Rex", "aliases": ["the dog"]}]  # no prompt names him: retrieval sees today's memory


def toy_story(characters=None) -> dict:
    story = {"story_name": "Two friends", "scenes": [{"scene_num": 1, "video_prompts": TOY_PROMPTS, "cut": [True] * 3}]}
    return {**story, "characters": characters} if characters is not None else story


def run_json(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def clip_hashes(run: Path) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((run / "shots").glob("shot_*"))]


def render(script: Path, run: Path, *args: str, model: str = "tiny"):
    result = runner.invoke(app, ["render", str(script), "-o", str(run), "--model", model, "--device", "cpu", *args])
    assert result.exit_code == 0, result.output
    return result


def test_without_characters_the_toy_model_renders_the_papers_memory_bit_for_bit(tmp_path, generate_log):
    """Tags and character retrieval change nothing where nobody is named; a script without
    characters goes the paper's way and records exactly what it did before. (Two shots: the
    second is the first conditioned on memory. generate_log: the toy model loads once.)"""
    def two_shots(story: dict) -> dict:
        story["scenes"][0].update(video_prompts=TOY_PROMPTS[:2], cut=[True, True])
        return story

    plain = write_script(tmp_path, "plain.json", two_shots(toy_story()))
    unnamed = write_script(tmp_path, "unnamed.json", two_shots(toy_story(UNNAMED_CAST)))
    tagged = write_script(tmp_path, "tagged.json", two_shots(toy_story(CAST)))
    render(plain, tmp_path / "plain", "--steps", "2", model="toy")
    render(unnamed, tmp_path / "unnamed", "--steps", "2", "--retrieval", "characters", model="toy")
    render(tagged, tmp_path / "tagged", "--steps", "2", "--retrieval", "paper", model="toy")
    expected = clip_hashes(tmp_path / "plain")
    assert len(expected) == 4  # 2 clips, 2 tails
    assert generate_log[1][0].memory  # shot 2 was conditioned on memory
    assert clip_hashes(tmp_path / "unnamed") == expected
    assert clip_hashes(tmp_path / "tagged") == expected

    record = run_json(tmp_path / "plain")
    assert record["settings"]["retrieval"] is None
    assert all("memory_why" not in s and "characters" not in s for s in record["shots"])
    memory = (tmp_path / "plain" / "memory.json").read_text()
    assert '"characters"' not in memory and '"retrieval"' not in memory
    # The paper's memory with characters declared still tags what each shot showed.
    tagged_shots = run_json(tmp_path / "tagged")["shots"]
    assert [s["characters"] for s in tagged_shots] == [["hero"], ["friend"]]


def test_character_retrieval_picks_who_the_shot_names_and_says_why(tmp_path, generate_log):
    script = write_script(tmp_path, "cast.json", toy_story(CAST))
    run = tmp_path / "run"
    render(script, run, "--json", "--keyframes", "first-frame")  # one keyframe per shot, none deduplicated
    record = run_json(run)
    assert record["settings"]["retrieval"] == "characters"  # the default for a script with characters
    third = record["shots"][2]
    bank = json.loads((run / "memory.json").read_text())
    shows = {e["id"]: e.get("characters", []) for e in bank["entries"]}
    # Shot 3 names the hero: it sees the hero's keyframe (shot 1), not the friend's (shot 2).
    assert sorted(shows.values()) == [["friend"], ["hero"], ["hero"]]
    assert len(third["memory_ids"]) == 1 and shows[third["memory_ids"][0]] == ["hero"]
    assert [w["why"] for w in third["memory_why"]] == ["names hero"] * len(third["memory_ids"])
    assert bank["retrieval"]["2"] == {w["id"]: w["why"] for w in third["memory_why"]}
    # The friend's first shot: nobody else's keyframes.
    assert record["shots"][1]["memory_ids"] == []

    shown = runner.invoke(app, ["inspect-memory", str(run), "--shot", "3"])
    assert shown.exit_code == 0, shown.output
    assert "named" in shown.output and "hero" in shown.output
    as_json = json.loads(runner.invoke(app, ["inspect-memory", str(run), "--shot", "3", "--json"]).stdout)
    assert set(as_json["why"].values()) == {"names hero"}
    assert all(e["characters"] == ["hero"] for e in as_json["entries"])


def test_the_retrieval_setting_is_in_the_fingerprint(tmp_path):
    def settings(**options):
        return resolve_settings(RenderOptions(**options), model_name="tiny", video=VideoConfig(width=64, height=32,
                                frames=9), steps=2, memory=MemoryConfig(aesthetic="none"), embedder="tiny")  # fmt: skip

    default = settings().fingerprint()
    assert default == "c6e3f17edfe5dd239e64fe8c3887be96fa9cecd4a81f514df2be2e149a3e1cb6"  # as before (pinned)
    assert settings(memory_from="/anywhere").fingerprint() == default  # the folder is not; its identity is
    changed = {settings(retrieval=r).fingerprint() for r in ("characters", "paper")}
    assert len(changed | {default, settings(describe_characters=True).fingerprint()}) == 4


def test_describe_characters_appends_descriptions_to_the_prompt_used(tmp_path):
    script = write_script(tmp_path, "cast.json", toy_story(CAST))
    result = runner.invoke(app, ["render", str(script), "--model", "tiny", "--dry-run", "--json",
                                 "--describe-characters", "-o", str(tmp_path / "run")])  # fmt: skip
    assert result.exit_code == 0, result.output
    prompts = [shot["prompt"] for shot in json.loads(result.stdout)["shots"]]
    assert prompts[0] == TOY_PROMPTS[0] + ". hero: a red triangle with glasses."
    assert prompts[2] == TOY_PROMPTS[2] + ". hero: a red triangle with glasses."
    plain = runner.invoke(app, ["render", str(script), "--model", "tiny", "--dry-run", "--json", "-o", str(tmp_path / "r")])
    assert [shot["prompt"] for shot in json.loads(plain.stdout)["shots"]] == TOY_PROMPTS
