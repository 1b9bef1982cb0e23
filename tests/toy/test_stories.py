"""Toy stories: valid storymem scripts whose prompts say, unambiguously, what each shot shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storymem_cli.script import load_script
from storymem_cli.toy.captions import parse_caption
from storymem_cli.toy.detect import detect_clip
from storymem_cli.toy.stories import main, make_story, story_truth

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("toy_*.json"))


def _load(tmp_path: Path, script: dict):
    path = tmp_path / "story.json"
    path.write_text(json.dumps(script), encoding="utf-8")
    return load_script(path)


def test_same_seed_same_story_and_seeds_differ():
    assert make_story(4).script() == make_story(4).script()
    assert make_story(4).script() != make_story(5).script()


@pytest.mark.parametrize("characters", [1, 2])
def test_stories_are_valid_scripts_and_their_truth_is_in_the_prompts(tmp_path, characters):
    for seed in range(25):
        story = make_story(seed, characters)
        script, warnings = _load(tmp_path, story.script())
        assert warnings == []
        assert script.shots[0].cut is True
        assert [s.prompt for s in script.shots] == [s.prompt for s in story.shots]
        assert story_truth(story.script()) == [s.shot for s in story.shots]
        assert set(story.characters) == ({"hero"} if characters == 1 else {"hero", "friend"})
        assert {s.role for s in story.shots} == set(story.characters)


def test_only_first_appearances_name_the_look():
    for seed in range(20):
        story = make_story(seed, characters=2)
        seen = set()
        for s in story.shots:
            p = parse_caption(s.prompt)
            assert (p.character is None) == (s.role in seen), s.prompt
            seen.add(s.role)


def test_scenes_change_setting_and_cuts_follow_scenes_and_characters():
    for seed in range(20):
        story = make_story(seed, characters=2, scenes=(4, 6))
        scene_settings = {}
        for prev, s in zip([None, *story.shots], story.shots):
            scene_settings.setdefault(s.scene, set()).add(s.shot.setting)
            expected = prev is None or prev.scene != s.scene or prev.role != s.role
            assert s.cut == expected
        assert all(len(v) == 1 for v in scene_settings.values())
        flat = [next(iter(v)) for v in scene_settings.values()]
        assert len(flat) == len(set(flat)) and 4 <= len(flat) <= 6
        hero, friend = story.characters["hero"], story.characters["friend"]
        assert hero.shape != friend.shape and hero.colour != friend.colour


def test_story_truth_rejects_a_role_before_its_introduction():
    script = {"scenes": [{"scene_num": 1, "video_prompts": ["the hero jumps up in the snow"], "cut": [True]}]}
    with pytest.raises(ValueError, match="before any prompt describes it"):
        story_truth(script)


def test_rendered_stories_show_what_their_scripts_say():
    story = make_story(2, characters=2)
    for truth, clip in zip(story_truth(story.script()), story.render()):
        d = detect_clip(clip)
        assert (d.colour, d.shape, d.setting) == (truth.character.colour, truth.character.shape, truth.setting)


def test_examples_are_valid_toy_scripts():
    assert len(EXAMPLES) >= 2
    for path in EXAMPLES:
        script, warnings = load_script(path)
        assert warnings == []
        truth = story_truth(json.loads(path.read_text(encoding="utf-8")))
        assert len(truth) == len(script.shots) >= 5


def test_cli_prints_a_script(capsys):
    assert main(["--seed", "3", "--characters", "2"]) == 0
    assert json.loads(capsys.readouterr().out) == make_story(3, 2).script()


def test_cli_rejects_bad_ranges(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--seed", "1", "--scenes", "3", "9"])
    assert exc.value.code == 2
    assert "scenes" in capsys.readouterr().err
