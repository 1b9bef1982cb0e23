"""The caption grammar is unambiguous: every caption parses back to what it was made from."""

from __future__ import annotations

import pytest

from storymem_cli.toy.captions import (
    ROLES,
    caption,
    describe,
    normalise,
    parse_caption,
    vocab,
)
from storymem_cli.toy.world import ACTIONS, SETTINGS, Character, Shot, all_shots


def test_every_full_caption_is_unique_and_parses_back():
    shots = all_shots()
    texts = [caption(s) for s in shots]
    assert len(set(texts)) == len(shots) == 160 * 8 * 7
    for shot, text in zip(shots, texts):
        p = parse_caption(text)
        assert (p.character, p.role, p.action, p.setting) == (shot.character, None, shot.action, shot.setting)


@pytest.mark.parametrize("role", ROLES)
def test_role_captions_name_action_and_setting_but_not_the_look(role):
    ch = Character("circle", "blue", "glasses")
    for action in ACTIONS:
        for setting in SETTINGS:
            text = caption(Shot(ch, action, setting), role=role)
            assert text.startswith(f"the {role} ")
            assert "blue" not in text and "circle" not in text and "glasses" not in text
            p = parse_caption(text)
            assert (p.character, p.role, p.action, p.setting) == (None, role, action, setting)


def test_the_example_from_the_issue():
    p = parse_caption("the hero hops to the left on the beach")
    assert (p.role, p.action, p.setting) == ("hero", "hop_left", "beach")
    assert caption(Shot(Character("circle", "red", "hat"), "hop_left", "beach")) == (
        "a red circle with a hat hops to the left on the beach"
    )


def test_articles_and_normalisation():
    assert describe(Character("square", "orange", "none")) == "an orange square"
    p = parse_caption("  An Orange square   walks to the right IN THE NIGHT CITY. ")
    assert p.character == Character("square", "orange", "none") and p.setting == "night_city"
    assert normalise("The hero jumps up.") == "the hero jumps up"


@pytest.mark.parametrize(
    "text",
    [
        "a orange square jumps up in the snow",  # wrong article
        "an red square jumps up in the snow",
        "the villain jumps up in the snow",  # unknown role
        "a red hexagon jumps up in the snow",  # unknown shape
        "a red square dances in the snow",  # unknown action
        "a red square jumps up on the moon",  # unknown setting
        "a red square jumps up",  # no setting
        "a red square with a hat with glasses jumps up in the snow",  # two accessories
        "",
    ],
)
def test_non_captions_are_rejected(text):
    with pytest.raises(ValueError, match="not a toy-world caption"):
        parse_caption(text)


def test_vocab_is_exactly_the_words_captions_use():
    words = {w for s in all_shots() for w in caption(s).split()}
    words |= {w for s in all_shots()[:56] for r in ROLES for w in caption(s, role=r).split()}
    assert vocab() == sorted(words)
    assert len(vocab()) == 44
