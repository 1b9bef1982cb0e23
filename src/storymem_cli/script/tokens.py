"""A tokenizer-free estimate of how many UMT5 tokens a prompt takes.

Wan2.2 encodes prompts with UMT5-XXL and truncates them at 512 tokens, so the end of a
longer prompt is silently ignored. Loading the real SentencePiece model to count would
need the model files and time; ``validate`` must stay fast and offline. The estimate:

- a run of letters (any script) counts 1 token per started 7 letters: UMT5's 250k-piece
  vocabulary keeps most English words whole and splits long ones;
- a run of digits counts 1 token per started 3 digits;
- each CJK / kana / hangul character counts 1 token;
- each other visible character (punctuation, symbols) counts 1 token;
- plus 1 for the end-of-sequence token.

For English cinematic prompts this gives about 1.2-1.3 tokens per word, which is what
T5-family tokenizers produce; it is meant to err slightly high, because the warning it
feeds ("likely past the limit") is cheap to ignore and a silent truncation is not.
"""

from __future__ import annotations

import re

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_PIECES = re.compile(rf"(?P<cjk>[{_CJK}])|(?P<letters>[^\W\d_{_CJK}]+)|(?P<digits>\d+)|(?P<other>[^\s\w]|_)")


def estimate_tokens(text: str) -> int:
    """Estimated UMT5 token count of ``text`` (see the module docstring for the rule)."""
    count = 1  # end-of-sequence token
    for match in _PIECES.finditer(text):
        kind = match.lastgroup
        n = len(match.group())
        if kind == "letters":
            count += -(-n // 7)
        elif kind == "digits":
            count += -(-n // 3)
        else:
            count += 1
    return count
