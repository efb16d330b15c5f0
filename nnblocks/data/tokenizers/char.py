"""Character tokenizer: one token per character (lossless decoding)."""

from __future__ import annotations

from typing import Any

from nnblocks.data.tokenizers.base import VocabTokenizer
from nnblocks.registry import register

__all__ = ["CharTokenizer"]


@register("tokenizer", "char")
class CharTokenizer(VocabTokenizer):
    """One token per character, with pad/bos/eos/unk specials.

    Args:
        min_freq: characters seen fewer times in the training texts become ``<unk>``.
        max_vocab: keep at most this many entries (specials included), most frequent first.
        lowercase: lower-case text before splitting.

    Example:
        >>> tok = CharTokenizer().fit(["hello"])
        >>> tok.decode(tok.encode("hell", eos=True))
        'hell'
    """

    name = "char"
    join = ""

    def __init__(self, min_freq: int = 1, max_vocab: int | None = None, lowercase: bool = False):
        super().__init__(min_freq=min_freq, max_vocab=max_vocab)
        self.lowercase = lowercase

    def tokenize(self, text: str) -> list[str]:
        return list(text.lower() if self.lowercase else text)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "lowercase": self.lowercase}
