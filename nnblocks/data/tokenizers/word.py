"""Word tokenizer: tokens found by a regular expression, rare words become ``<unk>``."""

from __future__ import annotations

import re
from typing import Any

from nnblocks.data.tokenizers.base import VocabTokenizer
from nnblocks.errors import DataError
from nnblocks.registry import register

__all__ = ["WordTokenizer"]


@register("tokenizer", "word")
class WordTokenizer(VocabTokenizer):
    """Words (and punctuation marks) as tokens; decoding joins them with spaces.

    Args:
        min_freq: words seen fewer times in the training texts become ``<unk>``.
        max_vocab: keep at most this many entries (specials included), most frequent first.
        lowercase: lower-case text before splitting (default True).
        pattern: regular expression of one token; the default takes runs of word
            characters and single punctuation marks. ``"[a-z]+"`` drops punctuation.

    Raises:
        DataError: ``pattern`` is not a valid regular expression.

    Example:
        >>> tok = WordTokenizer(min_freq=2).fit(["the cat", "the dog"])
        >>> tok.decode(tok.encode("the cat"))
        'the <unk>'
    """

    name = "word"
    join = " "

    def __init__(
        self,
        min_freq: int = 1,
        max_vocab: int | None = None,
        lowercase: bool = True,
        pattern: str = r"\w+|[^\w\s]",
    ):
        super().__init__(min_freq=min_freq, max_vocab=max_vocab)
        self.lowercase = lowercase
        self.pattern = pattern
        try:
            self._regex = re.compile(pattern)
        except re.error as exc:
            raise DataError(
                f"`pattern` of tokenizer `word` is not a regular expression: {exc}"
            ) from exc

    def tokenize(self, text: str) -> list[str]:
        return self._regex.findall(text.lower() if self.lowercase else text)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "lowercase": self.lowercase, "pattern": self.pattern}
