"""Reading files: JSON5, encodings, every problem with its JSON path, warnings."""

from __future__ import annotations

import json

import pytest

from storymem_cli.script import ScriptError, ScriptProblem, load_script


def problems_of(path) -> list[ScriptProblem]:
    with pytest.raises(ScriptError) as info:
        load_script(path)
    return info.value.problems


def test_true_false_strings_are_read_with_a_warning(write, base_story):
    base_story["scenes"][0]["cut"] = ["True", " FALSE", "true"]
    script, warnings = load_script(write(base_story))
    assert [s.cut for s in script.shots[:3]] == [True, False, True]
    assert [w.path for w in warnings] == ["scenes[0].cut[0]", "scenes[0].cut[1]", "scenes[0].cut[2]"]
    assert "read as false" in warnings[1].message


@pytest.mark.parametrize("value", ["yes", "0", 1, 0, None, [True]])
def test_other_cut_values_are_errors(write, base_story, value):
    base_story["scenes"][0]["cut"][1] = value
    problems = problems_of(write(base_story))
    assert [p.path for p in problems] == ["scenes[0].cut[1]"]
    assert "true or false" in problems[0].message


def test_json5_comments_and_trailing_commas(write):
    text = """
    // written by hand
    {
      story_name: 'Rain',   /* unquoted key, single quotes */
      scenes: [
        {scene_num: 1, video_prompts: ["Rain falls on a tin roof. Close-up.",], cut: [true,],},
      ],
    }
    """
    script, warnings = load_script(write(text, "rain.json5"))
    assert script.story_name == "Rain" and len(script.shots) == 1 and warnings == []


def test_plain_json_and_json5_read_to_the_same_script(write, base_story):
    """Plain JSON takes the standard library's parser (fast), JSON5 json5's: the same values."""
    base_story["scenes"][0]["seeds"] = [4000000007, None, 0]
    base_story["scenes"][0]["video_prompts"][0] += ' "quoted" \u00e9 \\ tab\t'
    plain = load_script(write(json.dumps(base_story), "plain.json"))
    commented = load_script(write("// a comment makes this JSON5\n" + json.dumps(base_story, indent=1), "five.json"))
    assert plain[0] == commented[0] and plain[1] == commented[1]


def test_utf8_bom_and_non_ascii_text(write, base_story):
    base_story["story_name"] = "Le cerf-volant — 风筝"
    path = write(b"\xef\xbb\xbf" + json.dumps(base_story, ensure_ascii=False).encode("utf-8"))
    script, _ = load_script(path)
    assert script.story_name == "Le cerf-volant — 风筝"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{\n  "story_name": "x",\n  "scenes": [}\n', "syntax error at line 3, column 14"),
        (b'{"story_name": "caf\xe9"}', "not UTF-8 text (byte 0xe9 at line 1, column 20)"),
        ('{"a": 1}'.encode("utf-16"), "UTF-16"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
        ("  \n", "is empty"),
        ("[1, 2]", "must be an object"),
    ],
)
def test_unreadable_files_get_one_clear_problem(write, content, expected):
    problems = problems_of(write(content))
    assert len(problems) == 1
    assert expected in problems[0].message


def test_missing_file_and_folder(tmp_path):
    assert "file not found" in problems_of(tmp_path / "nope.json")[0].message
    assert "is a folder" in problems_of(tmp_path)[0].message


def test_every_problem_of_a_file_is_collected(write, base_story):
    scene0, scene1 = base_story["scenes"]
    scene0["cut"][0] = False
    scene0["video_prompts"][1] = "   "
    scene1["scene_num"] = 1
    scene1["first_frame_prompt"] = ["only one"]
    base_story["story_nmae"] = base_story.pop("story_name")
    paths = [p.path for p in problems_of(write(base_story))]
    assert sorted(paths) == sorted(
        [
            "scenes[0].cut[0]",
            "scenes[0].video_prompts[1]",
            "scenes[1].scene_num",
            "scenes[1].first_frame_prompt",
            "story_nmae",
        ]
    )


def test_unknown_key_suggests_the_known_one_instead_of_reporting_it_missing(write, base_story):
    base_story["scenes"][1]["vidoe_prompts"] = base_story["scenes"][1].pop("video_prompts")
    problems = problems_of(write(base_story))
    assert problems == [
        ScriptProblem("scenes[1].vidoe_prompts", 'unknown key "vidoe_prompts": did you mean "video_prompts"?')
    ]


def test_unknown_key_without_a_close_match_lists_the_known_keys(write, base_story):
    base_story["music"] = "piano"
    (problem,) = problems_of(write(base_story))
    assert problem.path == "music"
    assert "story_name, story_overview, scenes, references" in problem.message


@pytest.mark.parametrize("comment", ["", "// JSON5: read by json5, not the standard library\n"])
def test_duplicate_keys_are_errors(write, comment):
    text = comment + '{"story_name": "a", "story_name": "b", "scenes": [{"scene_num": 1, "video_prompts": ["x"]}]}'
    (problem,) = problems_of(write(text))
    assert problem.path == "story_name"
    assert "more than once" in problem.message


def test_scene_numbers_must_increase(write, base_story):
    third = json.loads(json.dumps(base_story["scenes"][1]))
    base_story["scenes"][1]["scene_num"] = 5
    third["scene_num"] = 3
    base_story["scenes"].append(third)
    (problem,) = problems_of(write(base_story))
    assert problem.path == "scenes[2].scene_num"
    assert "increasing order" in problem.message


def test_gaps_in_scene_numbers_are_fine_and_continuations_may_open_a_scene(write, base_story):
    base_story["scenes"][1]["scene_num"] = 7
    base_story["scenes"][1]["cut"][0] = False
    script, warnings = load_script(write(base_story))
    assert [s.scene for s in script.shots] == [1, 1, 1, 7, 7] and warnings == []


def test_seeds(write, base_story):
    base_story["scenes"][0]["seeds"] = [0, None, 2**32 - 1]
    script, _ = load_script(write(base_story, "ok.json"))
    assert [s.seed for s in script.shots[:3]] == [0, None, 2**32 - 1]
    base_story["scenes"][0]["seeds"] = [-1, 1.5, 2**32]
    problems = problems_of(write(base_story, "bad.json"))
    assert [p.path for p in problems] == ["scenes[0].seeds[0]", "scenes[0].seeds[1]", "scenes[0].seeds[2]"]
    base_story["scenes"][0]["seeds"] = [1]
    assert [p.path for p in problems_of(write(base_story, "short.json"))] == ["scenes[0].seeds"]


def test_references_are_checked_and_resolved(write, png, tmp_path, base_story):
    png("refs/ok.png")
    (tmp_path / "refs/broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "refs/folder.png").mkdir()
    (tmp_path / "refs/text.png").write_text("not an image")
    base_story["references"] = [
        {"image": "refs/ok.png", "name": "ok"},
        {"image": "refs/missing.png", "name": "missing"},
        {"image": "refs/text.png", "name": "text"},
        {"image": "refs/broken.png", "name": "broken"},
        {"image": "refs/folder.png", "name": "folder"},
        {"image": "refs/ok.png", "name": "ok"},
    ]
    problems = problems_of(write(base_story))
    by_path = {p.path: p.message for p in problems}
    assert set(by_path) == {
        "references[1].image",
        "references[2].image",
        "references[3].image",
        "references[4].image",
        "references[5].name",
    }
    assert "not a readable image file" in by_path["references[1].image"]
    assert "not a readable image file" in by_path["references[2].image"]
    assert "is a corrupt image" in by_path["references[3].image"]
    assert "not a readable image file" in by_path["references[4].image"]


def test_long_prompt_and_long_story_warnings(write, base_story):
    base_story["scenes"][0]["video_prompts"][0] = "A boy runs up a windy hill with his red kite. " * 60
    scenes = []
    for n in range(1, 9):
        scene = json.loads(json.dumps(base_story["scenes"][0]))
        scene["scene_num"] = n
        scene["cut"] = [True] * 3 if n == 1 else scene["cut"]
        scenes.append(scene)
    base_story["scenes"] = scenes  # 8 scenes x 3 shots = 24: no story warning yet
    _, warnings = load_script(write(base_story, "a.json"))
    assert {w.path for w in warnings} == {f"scenes[{i}].video_prompts[0]" for i in range(8)}
    assert "512" in warnings[0].message

    base_story["scenes"][0]["video_prompts"][0] = "A boy runs up a windy hill."
    for n in range(9, 12):
        scene = json.loads(json.dumps(scenes[1]))
        scene["scene_num"] = n
        base_story["scenes"].append(scene)  # 33 shots
    _, warnings = load_script(write(base_story, "b.json"))
    story_warning = [w for w in warnings if w.path == "scenes"]
    assert len(story_warning) == 1 and "33 shots" in story_warning[0].message


def test_the_readme_example_is_valid(write):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Story script format", 1)[1]
    example = section.split("```json\n", 1)[1].split("```", 1)[0]
    script, warnings = load_script(write(example))
    assert warnings == []
    assert [s.cut for s in script.shots] == [True, False]
