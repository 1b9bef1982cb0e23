"""The tokenizer-free prompt-length estimate."""

from __future__ import annotations

from storymem_cli.script.tokens import estimate_tokens

PROMPT = (
    "Early morning light fills a cluttered clock shop as an old clockmaker with round spectacles "
    "tightens a final screw in a small red tin robot. Close-up, shallow depth of field."
)


def test_english_prompts_cost_a_bit_more_than_a_token_per_word():
    words = len(PROMPT.split())
    assert 1.1 * words <= estimate_tokens(PROMPT) <= 1.6 * words


def test_counts_each_piece_kind():
    assert estimate_tokens("") == 1  # end-of-sequence only
    assert estimate_tokens("cat") == 2
    assert estimate_tokens("cinematography") == 3  # 14 letters: two pieces
    assert estimate_tokens("cat, dog.") == 5
    assert estimate_tokens("2024") == 3
    assert estimate_tokens("东京的夜晚") == 6  # one per CJK character
    assert estimate_tokens("Ñandú") == 2  # letters of any script


def test_a_long_prompt_passes_the_limit():
    assert estimate_tokens(" ".join([PROMPT] * 14)) > 512
    assert estimate_tokens(" ".join([PROMPT] * 8)) < 512
