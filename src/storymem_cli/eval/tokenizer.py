"""ViCLIP's text tokenizer: CLIP BPE (the vocabulary file open_clip ships), 32 tokens.

A prompt longer than the context is cut and its last kept token replaced by EOT, as
ViCLIP's own tokenizer does. 98% of ST-Bench shot prompts are longer than 30 tokens,
so the metric reads only their beginning (SPEC 9): reproduced on purpose.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@lru_cache(maxsize=4)
def _tokenizer(context_length: int):
    from open_clip.tokenizer import (
        SimpleTokenizer,  # bundles bpe_simple_vocab_16e6.txt.gz
    )

    return SimpleTokenizer(context_length=context_length)


def tokenize(texts: list[str], context_length: int) -> torch.Tensor:
    """Texts -> (N, context_length) int64: SOT, BPE ids, EOT, zero padding; truncated with EOT last."""
    return _tokenizer(context_length)(list(texts), context_length=context_length)


def token_count(text: str) -> int:
    """BPE tokens of `text` without SOT/EOT: how much of a prompt ViCLIP could read."""
    return len(_tokenizer(77).encode(text))
