"""The validated script: flat shots, canonical JSON, sha256 and per-shot fingerprints."""

from __future__ import annotations

import json
import shutil

import jsonschema
import pytest

from storymem_cli.script import Reference, ScriptError, Shot, StoryScript, load_script

from .conftest import story


def test_shots_are_flattened_in_story_order(write, base_story):
    base_story["scenes"][1]["seeds"] = [None, 7]
    script, warnings = load_script(write(base_story))
    assert warnings == []
    assert [s.index for s in script.shots] == [0, 1, 2, 3, 4]
    assert [s.scene for s in script.shots] == [1, 1, 1, 2, 2]
    assert [s.index_in_scene for s in script.shots] == [0, 1, 2, 0, 1]
    assert [s.cut for s in script.shots] == [True, False, True, True, True]
    assert [s.seed for s in script.shots] == [None, None, None, None, 7]
    assert script.shots[1] == Shot(
        index=1,
        scene=1,
        index_in_scene=1,
        prompt=base_story["scenes"][0]["video_prompts"][1],
        cut=False,
        first_frame_prompt="Red kite rising.",
        seed=None,
    )
    assert script.continuations == 1
    assert script.story_name == "The Kite"
    assert script.story_overview.startswith("A boy")
    assert len(script.scenes) == 2


def test_first_frame_prompt_is_optional(write, base_story):
    del base_story["scenes"][0]["first_frame_prompt"]
    script, _ = load_script(write(base_story))
    assert [s.first_frame_prompt for s in script.shots][:3] == [None, None, None]
    assert script.shots[3].first_frame_prompt == "Two figures on a hill at sunset."


def test_sha256_ignores_comments_whitespace_and_key_order(write, base_story):
    plain, _ = load_script(write(base_story, "plain.json"))
    scene = base_story["scenes"][1]
    reordered = dict(reversed(list(base_story.items())))
    reordered["scenes"] = [base_story["scenes"][0], dict(reversed(list(scene.items())))]
    text = "// a note for the author\n" + json.dumps(reordered, indent=7).replace("\n}", ",\n}", 1)
    commented, _ = load_script(write(text, "commented.json5"))
    assert commented == plain
    assert commented.sha256 == plain.sha256


def test_sha256_changes_with_content(write, base_story):
    before, _ = load_script(write(base_story, "a.json"))
    base_story["scenes"][1]["video_prompts"][0] += " Golden light."
    after, _ = load_script(write(base_story, "b.json"))
    assert before.sha256 != after.sha256


def test_missing_cut_is_the_same_script_as_all_cuts(write, base_story):
    base_story["scenes"][1].pop("cut")
    implicit, warnings = load_script(write(base_story, "a.json"))
    base_story["scenes"][1]["cut"] = [True, True]
    explicit, _ = load_script(write(base_story, "b.json"))
    assert [w.path for w in warnings] == ["scenes[1].cut"]
    assert implicit.sha256 == explicit.sha256


def test_fingerprint_changes_only_for_the_edited_shot(write, base_story):
    before, _ = load_script(write(base_story, "a.json"))
    base_story["scenes"][0]["video_prompts"][2] = "The grandmother waves her blue scarf. Medium shot."
    base_story["scenes"][1]["seeds"] = [None, 42]
    base_story["scenes"][1]["first_frame_prompt"][0] = "Two figures on a hill at dusk."
    base_story["story_overview"] = "Rewritten overview."  # not used to generate any shot
    after, _ = load_script(write(base_story, "b.json"))
    changed = [i for i in range(5) if before.shot_fingerprint(i) != after.shot_fingerprint(i)]
    assert changed == [2, 3, 4]


def test_fingerprint_follows_the_cut_flag(write, base_story):
    before, _ = load_script(write(base_story, "a.json"))
    base_story["scenes"][0]["cut"][1] = True
    after, _ = load_script(write(base_story, "b.json"))
    assert before.shot_fingerprint(1) != after.shot_fingerprint(1)
    assert before.shot_fingerprint(0) == after.shot_fingerprint(0)


def test_fingerprint_and_sha256_follow_reference_content_not_location(write, png, tmp_path, base_story):
    png("one/refs/kite.png", (200, 40, 40))
    base_story["references"] = [{"image": "refs/kite.png", "name": "kite"}]
    first, _ = load_script(write(base_story, "one/story.json"))
    assert first.references == [Reference(image=tmp_path / "one/refs/kite.png", name="kite")]
    assert first.references[0].image.is_absolute()

    shutil.copytree(tmp_path / "one", tmp_path / "moved")
    moved, _ = load_script(tmp_path / "moved/story.json")
    assert moved.references[0].image == tmp_path / "moved/refs/kite.png"
    assert moved.sha256 == first.sha256
    assert moved.shot_fingerprint(3) == first.shot_fingerprint(3)

    png("moved/refs/kite.png", (40, 40, 200))  # same path, new picture
    repainted, _ = load_script(tmp_path / "moved/story.json")
    assert repainted.sha256 != first.sha256
    assert all(repainted.shot_fingerprint(i) != first.shot_fingerprint(i) for i in range(5))


def test_canonical_json_reloads_to_the_same_script(write, png, tmp_path, base_story):
    png("refs/kite.png")
    base_story["references"] = [{"image": "refs/kite.png", "name": "kite"}]
    script, _ = load_script(write(base_story))
    (tmp_path / "run").mkdir()
    copy_path = write(script.canonical_json(), "run/script.json")
    again, _ = load_script(copy_path)
    assert again == script
    assert again.sha256 == script.sha256
    assert again.canonical_json() == script.canonical_json()


def test_model_validate_alone_enforces_the_cross_field_rules():
    data = story()
    data["scenes"][0]["cut"][0] = False
    with pytest.raises(ValueError, match=r"scenes\[0\]\.cut\[0\]"):
        StoryScript.model_validate(data)


def test_script_error_is_invalid_input(write, base_story):
    base_story["scenes"][0]["cut"] = [True]
    base_story["story_name"] = 3
    path = write(base_story)
    with pytest.raises(ScriptError) as info:
        load_script(path)
    err = info.value
    assert err.exit_code == 2
    assert err.path == path
    assert {p.path for p in err.problems} == {"scenes[0].cut", "story_name"}
    assert str(path) in err.message


def test_schema_accepts_the_examples_and_rejects_broken_scripts():
    from pathlib import Path

    schema = StoryScript.model_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    examples = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.json"))
    assert len(examples) >= 3
    for path in examples:
        validator.validate(json.loads(path.read_text(encoding="utf-8")))
    broken = story()
    broken["scenes"][0]["cut"][1] = "no"
    broken["scenes"][1]["vidoe_prompts"] = []
    assert len(list(validator.iter_errors(broken))) == 2


def test_derived_values_follow_a_copied_and_edited_script(write, base_story):
    script, _ = load_script(write(base_story))
    before = (script.sha256, script.shot_fingerprint(0), len(script.shots))
    scenes = [
        script.scenes[0].model_copy(
            update={"video_prompts": ["A new first shot.", *script.scenes[0].video_prompts[1:]]}
        )
    ]
    edited = script.model_copy(update={"scenes": scenes})
    assert (edited.sha256, edited.shot_fingerprint(0), len(edited.shots)) != before
    assert len(edited.shots) == 3


def test_shot_fingerprints_hash_the_references_once_not_per_shot(tmp_path, monkeypatch):
    # A story of n shots used to rebuild the shot list and hash every reference image for each
    # shot (n^2 work): a 2000-shot story spent minutes here before its first frame.
    import json

    from PIL import Image

    from storymem_cli.script import load_script
    from storymem_cli.script import model as model_module

    Image.new("RGB", (32, 32)).save(tmp_path / "hero.png")
    prompts = [f"shot {i}: a boat on a lake" for i in range(300)]
    story = {
        "story_name": "Long",
        "references": [{"name": "Hero", "image": "hero.png"}],
        "scenes": [{"scene_num": 1, "video_prompts": prompts, "cut": [True] * len(prompts)}],
    }
    (tmp_path / "long.json").write_text(json.dumps(story))
    script, _ = load_script(tmp_path / "long.json")
    calls = []
    real = model_module._file_sha256
    monkeypatch.setattr(model_module, "_file_sha256", lambda path: calls.append(path) or real(path))
    fingerprints = script.shot_fingerprints()
    assert len(calls) == 1
    assert fingerprints == [script.shot_fingerprint(i) for i in range(len(prompts))]
    assert len(set(fingerprints)) == len(prompts)
