"""Source: a token corpus folder on disk (memory-mapped), for language models of any size."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nnblocks.data.bundle import DataBundle
from nnblocks.data.tasks import LanguageModelTask
from nnblocks.data.token_blocks import TokenBlocks
from nnblocks.data.token_file import open_token_corpus
from nnblocks.data.tokenizers.base import Tokenizer, load_tokenizer
from nnblocks.errors import DataError

__all__ = ["from_token_corpus"]


def from_token_corpus(
    path: str | os.PathLike[str],
    *,
    block_size: int = 128,
    tokenizer: Tokenizer | str | os.PathLike[str] | None = None,
    verify: bool = False,
) -> DataBundle:
    """A language-modelling DataBundle over a corpus written by ``write_token_corpus``.

    Each split is a ``TokenBlocks`` over the memory-mapped split file: examples are
    ``(tokens [T], next [T])`` blocks gathered on demand, so the corpus is never loaded
    into memory and the Learner batches it by index like in-memory tensors (seeded order,
    exact resume).

    Args:
        path: the corpus folder.
        block_size: tokens per example (``T``; offered as the model's ``max_len``).
        tokenizer: the tokenizer (object or ``tokenizer.json`` path) the model is meant to
            use; the corpus must have been written by it. Default: the corpus's own.
        verify: check every file's SHA-256 against the manifest first (reads the corpus once).

    Raises:
        DataError: not a corpus folder, a truncated file, a corpus written by another
            tokenizer, or a split shorter than one block (naming the file).

    Example:
        >>> bundle = from_token_corpus("corpus/", block_size=256)  # doctest: +SKIP
    """
    tok = (
        load_tokenizer(Path(tokenizer)) if isinstance(tokenizer, (str, os.PathLike)) else tokenizer
    )
    corpus = open_token_corpus(path, tokenizer=tok, verify=verify)
    made: dict[str, Any] = {}
    for name, tokens in corpus.splits.items():
        if len(tokens) < block_size + 1:
            if name == "train":
                raise DataError(
                    f"`{Path(path) / 'train.bin'}`: {len(tokens)} training tokens hold no block "
                    f"of block_size={block_size} tokens."
                )
            continue
        made[name] = TokenBlocks(tokens, block_size)
    return DataBundle.from_splits(
        made,
        task=LanguageModelTask(corpus.tokenizer, block_size=block_size),
        tokenizers={"text": corpus.tokenizer},
        info={"source": str(path), "tokens": corpus.meta["tokens"], "dtype": corpus.meta["dtype"]},
    )
