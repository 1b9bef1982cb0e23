"""Characters in the script: optional, validated with JSON paths, matched in prompts by whole words."""

from __future__ import annotations

import pytest

from storymem_cli.script import ScriptError, load_script
from storymem_cli.script.characters import named_characters

CAST = [
    {"name": "Leo", "aliases": ["the boy", "green jacket"], "description": "a boy of ten in a green jacket"},
    {"name": "Grandma", "aliases": ["his grandmother", "blue scarf"]},
]


def problems_of(path) -> dict[str, str]:
    with pytest.raises(ScriptError) as info:
        load_script(path)
    return {p.path: p.message for p in info.value.problems}


def test_a_script_without_characters_dumps_and_hashes_as_before(write, base_story):
    script, _ = load_script(write(base_story))
    assert "characters" not in script.canonical_json()
    with_empty, _ = load_script(write({**base_story, "characters": []}, "empty.json"))
    assert with_empty.sha256 == script.sha256
    assert with_empty.shot_fingerprints() == script.shot_fingerprints()


def test_characters_are_read_and_change_every_fingerprint(write, base_story):
    plain, _ = load_script(write(base_story))
    script, warnings = load_script(write({**base_story, "characters": CAST}, "cast.json"))
    assert [c.name for c in script.characters] == ["Leo", "Grandma"]
    assert not warnings
    assert all(a != b for a, b in zip(script.shot_fingerprints(), plain.shot_fingerprints()))
    again, _ = load_script(write(script.canonical_json(), "again.json"))  # script.json reads back unchanged
    assert again.sha256 == script.sha256


def test_who_each_shot_names(write, base_story):
    script, _ = load_script(write({**base_story, "characters": CAST}))
    assert [script.named_characters(s.prompt) for s in script.shots] == [
        ["Leo"], ["Leo"], ["Grandma"], ["Leo", "Grandma"], ["Leo"]
    ]


@pytest.mark.parametrize(
    ("prompt", "named"),
    [
        ("Mia waves", ["Mia"]),
        ("MIA waves", ["Mia"]),
        ("Miami at night", []),
        ("a girl in a red\n coat", ["Mia"]),
        ("a redcoat soldier", []),
        ("Mia's kite", ["Mia"]),
    ],
)
def test_whole_word_case_insensitive_matching(prompt, named):
    assert named_characters(prompt, [{"name": "Mia", "aliases": ["red coat"]}]) == named


def test_character_references_are_tagged_and_checked_like_the_scripts(write, base_story, png):
    png("refs/leo.png")
    png("refs/grandma.png", (10, 10, 200))
    story = {
        **base_story,
        "references": [{"image": "refs/grandma.png", "name": "his grandmother"}],
        "characters": [{**CAST[0], "references": ["refs/leo.png"]}, CAST[1]],
    }
    script, _ = load_script(write(story))
    tags = [(ref.name, ref.characters) for ref in script.reference_images()]
    assert tags == [("his grandmother", ("Grandma",)), ("Leo", ("Leo",))]

    story["characters"][0]["references"] = ["refs/nowhere.png", ""]
    found = problems_of(write(story))
    assert "is not a readable image" in found["characters[0].references[0]"]
    assert "empty" in found["characters[0].references[1]"]


@pytest.mark.parametrize(
    ("cast", "path", "words"),
    [
        ([{"name": "Leo", "aliases": ["he"]}], "characters[0].aliases[0]", "pronoun"),
        ([{"name": "They"}], "characters[0].name", "pronoun"),
        ([{"name": "Leo"}, {"name": "leo"}], "characters[1].name", "given twice"),
        ([{"name": "Leo", "aliases": ["the boy"]}, {"name": "Max", "aliases": ["The  Boy"]}],
         "characters[1].aliases[0]", "given twice"),
        ([{"name": "Leo", "aliases": ["jacket"]}, {"name": "Max", "aliases": ["green jacket"]}],
         "characters[1].aliases[0]", "contains"),
        ([{"name": "Leo", "nickname": "L"}], "characters[0].nickname", "unknown key"),
        ([{"aliases": ["the boy"]}], "characters[0].name", "character's name"),
        ([{"name": ""}], "characters[0].name", "empty"),
        ([{"name": "Leo", "aliases": "the boy"}], "characters[0].aliases", "list"),
        ([{"name": "Leo", "description": ""}], "characters[0].description", "empty"),
        (["Leo"], "characters[0]", "object"),
    ],
)
def test_bad_characters_are_refused_with_their_path(write, base_story, cast, path, words):
    found = problems_of(write({**base_story, "characters": cast}))
    assert path in found, found
    assert words in found[path]


def test_a_character_no_prompt_names_is_a_warning(write, base_story):
    _, warnings = load_script(write({**base_story, "characters": [*CAST, {"name": "Rex", "aliases": ["the dog"]}]}))
    assert [w.path for w in warnings] == ["characters[2]"]


def test_the_schema_describes_characters():
    from storymem_cli.script import StoryScript

    schema = StoryScript.model_json_schema()
    assert "characters" in schema["properties"]
    character = schema["$defs"]["Character"]
    assert character["required"] == ["name"]
    assert set(character["properties"]) == {"name", "aliases", "references", "description"}
