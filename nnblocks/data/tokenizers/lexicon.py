"""Lexicon tokenizer: split text into pieces of a fixed list (e.g. morphemes)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from nnblocks.data.tokenizers.base import SPECIALS, VocabTokenizer
from nnblocks.errors import DataError
from nnblocks.registry import register

__all__ = ["LexiconTokenizer"]


@register("tokenizer", "lexicon")
class LexiconTokenizer(VocabTokenizer):
    """Splits text into the longest pieces of a given lexicon, left to right.

    German number words are one long word ("zweiundzwanzig"); split into morphemes
    (zwei|und|zwanzig) a translation model learns them from a vocabulary of ~30 pieces.
    A character no piece covers becomes a one-character token (``<unk>`` unless it is in
    the lexicon). The vocabulary is the lexicon itself, so ``fit`` learns nothing and
    decoding (joining pieces with no separator) is lossless.

    Args:
        lexicon: the pieces; longer ones are preferred (matching is greedy, longest first).
        lowercase: lower-case text before splitting.

    Raises:
        DataError: an empty lexicon, or one holding an empty string or a special token.

    Example:
        >>> tok = LexiconTokenizer(["zwei", "und", "zwanzig"])
        >>> [tok.vocab[i] for i in tok.encode("zweiundzwanzig")]
        ['zwei', 'und', 'zwanzig']
    """

    name = "lexicon"
    join = ""

    def __init__(self, lexicon: Sequence[str], lowercase: bool = False):
        super().__init__()
        pieces = list(dict.fromkeys(lexicon))  # drop repeats, keep order (stable ids)
        if not pieces or any(not isinstance(p, str) or not p or p in SPECIALS for p in pieces):
            raise DataError(
                "`lexicon` of tokenizer `lexicon` must be a non-empty list of non-empty strings "
                f"other than the specials {list(SPECIALS)}. Received: {list(lexicon)[:10]}"
            )
        self.lexicon = pieces
        self.lowercase = lowercase
        # Alternatives in a regex are tried in order: longest first gives greedy longest
        # match; the final `.` turns any uncovered character into its own token.
        ordered = sorted(pieces, key=len, reverse=True)
        self._regex = re.compile("|".join(re.escape(p) for p in ordered) + "|.", re.DOTALL)
        self._set_vocab(list(SPECIALS) + pieces)

    def fit(self, texts: Iterable[str]) -> LexiconTokenizer:
        """Nothing to learn: the vocabulary is the lexicon."""
        return self

    def tokenize(self, text: str) -> list[str]:
        return self._regex.findall(text.lower() if self.lowercase else text)

    def options(self) -> dict[str, Any]:
        return {"lexicon": list(self.lexicon), "lowercase": self.lowercase}

    def _state(self) -> dict[str, Any]:
        return {}

    def _load_state(self, state: dict[str, Any]) -> None:
        pass
