"""Building tokenizers from specs and fitting them on the training split."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nnblocks.data.tokenizers.base import Tokenizer


def make_tokenizer(spec: Any, train_texts: Iterable[str], *, path: str) -> Tokenizer:
    """A tokenizer from a spec (name, dict) fitted on ``train_texts``, or a given one as is.

    A ``Tokenizer`` object passed in that is already fitted is used unchanged (so two
    datasets can share a vocabulary); an unfitted one is fitted on the training texts.
    """
    from nnblocks.registry import build

    tok = spec if isinstance(spec, Tokenizer) else build(spec, "tokenizer", at=path)
    if not tok.fitted:
        tok.fit(train_texts)
    return tok
