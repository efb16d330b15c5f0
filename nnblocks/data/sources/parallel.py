"""Sources: parallel text — pairs of source/target strings (sequence to sequence)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from nnblocks.data.batching import pad_sequences
from nnblocks.data.bundle import DataBundle
from nnblocks.data.sources._tokens import make_tokenizer
from nnblocks.data.sources.records import read_columns
from nnblocks.data.splits import check_leakage, make_splits
from nnblocks.data.tasks import Seq2SeqTask
from nnblocks.data.tensors import TensorData
from nnblocks.errors import DataError

__all__ = ["from_pairs", "from_parallel_text"]

log = logging.getLogger(__name__)


def _encode(
    pairs: Sequence[tuple[str, str]], src_tok: Any, tgt_tok: Any
) -> tuple[list[list[int]], list[list[int]]]:
    src = [src_tok.encode(s) for s, _ in pairs]
    tgt = [tgt_tok.encode(t) for _, t in pairs]
    return src, tgt


def _check_pairs(pairs: Sequence[Any], where: str) -> None:
    if not pairs:
        raise DataError(f"{where}: no pairs given.")
    for i, p in enumerate(pairs[:1000]):
        if not (
            isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(s, str) for s in p)
        ):
            raise DataError(
                f"{where}: pair {i} is not two strings (source, target). Received: {p!r:.80}"
            )


def _encode_split(
    items: Sequence[tuple[str, str]],
    src_tok: Any,
    tgt_tok: Any,
    *,
    max_len: int | None,
    where: str,
    name: str,
) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of one split's pairs, without the pairs longer than ``max_len``."""
    src, tgt = _encode(items, src_tok, tgt_tok)
    if max_len is not None:
        keep = [
            i
            for i, (s, t) in enumerate(zip(src, tgt))
            if len(s) <= max_len and len(t) + 1 <= max_len
        ]
        if len(keep) < len(src):
            log.info(
                "%s: dropped %d %s pairs longer than max_len=%d",
                where,
                len(src) - len(keep),
                name,
                max_len,
            )
        src, tgt = [src[i] for i in keep], [tgt[i] for i in keep]
    if not src:
        raise DataError(f"{where}: the `{name}` split is empty (after max_len={max_len}).")
    return src, tgt


def _tensor_splits(
    encoded: Mapping[str, tuple[list[list[int]], list[list[int]]]], src_tok: Any, tgt_tok: Any
) -> tuple[dict[str, TensorData], int, int]:
    """``(src [N, S], tgt_in [N, T], tgt_out [N, T])`` per split, padded to common lengths."""
    src_len = max(len(s) for src, _ in encoded.values() for s in src)
    tgt_len = max(len(t) for _, tgt in encoded.values() for t in tgt) + 1
    pad = tgt_tok.pad_id
    made: dict[str, TensorData] = {}
    for name, (src, tgt) in encoded.items():
        s, _ = pad_sequences(src, pad_id=src_tok.pad_id, length=src_len)  # [N, S]
        body, _ = pad_sequences(tgt, pad_id=pad, length=tgt_len - 1)  # [N, T-1]
        column = torch.full((len(tgt), 1), pad, dtype=torch.long)
        t_in = torch.cat([column.fill_(tgt_tok.bos_id), body], dim=1)  # [N, T]: BOS + target
        t_out = torch.cat([body, torch.full_like(column, pad)], dim=1)  # [N, T]: target + EOS
        lengths = torch.tensor([len(t) for t in tgt], dtype=torch.long)
        t_out[torch.arange(len(tgt)), lengths] = tgt_tok.eos_id
        made[name] = TensorData(
            s,
            t_in,
            t_out,
            n_inputs=2,
            trim={0: src_tok.pad_id, 1: pad, 2: pad},
            names=["src", "tgt_in", "tgt_out"],
        )
    return made, src_len, tgt_len


def from_pairs(
    pairs: Sequence[tuple[str, str]],
    *,
    src_tokenizer: Any = "word",
    tgt_tokenizer: Any = "word",
    split: Any = None,
    extra: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    max_len: int | None = None,
    label_smoothing: float = 0.0,
    where: str = "pairs",
    info: Mapping[str, Any] | None = None,
) -> DataBundle:
    """A seq2seq DataBundle from ``(source, target)`` string pairs.

    Each split is a ``TensorData`` of ``(src [N, S], tgt_in [N, T], tgt_out [N, T])`` with
    ``n_inputs=2``: ``tgt_in`` = BOS + target, ``tgt_out`` = target + EOS, right-padded with
    ``pad_id`` and trimmed per batch (``trim``). Tokenizers are fitted on the training
    pairs only.

    Args:
        pairs: the examples.
        src_tokenizer, tgt_tokenizer: tokenizer specs (``"word"``, ``"char"``, ``"bpe"``,
            ``{"name": "lexicon", "lexicon": [...]}``) or Tokenizer objects.
        split: a split spec; default ``{"name": "group", "valid": 0.1, "test": 0.1}`` —
            grouped by source sentence, so one source never sits in two splits.
        extra: further named splits given as pairs (e.g. ``{"long": [...]}``), encoded with
            the training tokenizers.
        max_len: drop pairs whose source or target (with BOS/EOS) is longer; default: keep all.
        label_smoothing: of the cross-entropy loss.
        where: the data's name in messages.
        info: facts stored in ``bundle.info``.

    Raises:
        DataError: no pairs, a pair that is not two strings, an empty split, or a source
            sentence of another split that also occurs in training (leakage).

    Example:
        >>> bundle = from_pairs([(f"a {i}", f"b {i}") for i in range(50)], split={"name": "group", "valid": 5})
        >>> sorted(bundle.task.model_args)
        ['bos_id', 'eos_id', 'max_len', 'pad_id', 'src_vocab_size', 'tgt_vocab_size']
    """
    _check_pairs(pairs, where)
    sources = [s for s, _ in pairs]
    if split is None:
        split = {"name": "group", "valid": 0.1, "test": 0.1}
    splits = make_splits(
        split, len(pairs), groups=sources, items=pairs, default="group", path=f"{where}.split"
    )
    by_split: dict[str, list[tuple[str, str]]] = {
        name: [pairs[i] for i in idx.tolist()] for name, idx in splits.items() if len(idx)
    }
    for name, more in (extra or {}).items():
        if name in by_split:
            raise DataError(f"{where}: extra split `{name}` clashes with a split of that name.")
        by_split[name] = list(more)
    # Leakage: no source sentence of another split may also be a training source.
    check_leakage({k: [s for s, _ in v] for k, v in by_split.items()}, what="source sentence")
    train = by_split["train"]
    src_tok = make_tokenizer(src_tokenizer, (s for s, _ in train), path=f"{where}.src_tokenizer")
    tgt_tok = make_tokenizer(tgt_tokenizer, (t for _, t in train), path=f"{where}.tgt_tokenizer")
    encoded = {
        name: _encode_split(items, src_tok, tgt_tok, max_len=max_len, where=where, name=name)
        for name, items in by_split.items()
    }
    made, src_len, tgt_len = _tensor_splits(encoded, src_tok, tgt_tok)
    # +1: a decoder may be stepped once past the longest target (to see it emit EOS)
    task = Seq2SeqTask(
        src_tok, tgt_tok, max_len=max(src_len, tgt_len) + 1, label_smoothing=label_smoothing
    )
    return DataBundle.from_splits(
        made,
        task=task,
        tokenizers={"src": src_tok, "tgt": tgt_tok},
        info={"source": where, **(info or {})},
    )


def from_parallel_text(
    src: str | Path,
    tgt: str | Path | None = None,
    *,
    columns: Sequence[str] = ("source", "target"),
    encoding: str = "utf-8",
    **options: Any,
) -> DataBundle:
    """A seq2seq DataBundle from two line-aligned text files, or one file of pairs.

    Args:
        src: the source file (line i translates to line i of ``tgt``), or, when ``tgt`` is
            None, a record file of pairs: CSV or TSV with a header row, or JSON lines
            (``{"source": ..., "target": ...}`` a line).
        tgt: the target file.
        columns: the record file's source and target column names.
        encoding: text encoding of the files.
        **options: the options of ``from_pairs``.

    Raises:
        DataError: a missing file, files with different line counts, a record file without
            the named columns or with a non-text value in them (naming the file, column
            and row).

    Example:
        >>> bundle = from_parallel_text("train.en", "train.de", src_tokenizer="bpe")  # doctest: +SKIP
        >>> bundle = from_parallel_text("pairs.tsv", columns=("en", "de"))  # doctest: +SKIP
    """
    src = Path(src)
    if not src.is_file():
        raise DataError(f"parallel text file `{src}` not found.")
    if tgt is None:
        if len(columns) != 2:
            raise DataError(
                f"`columns` must name the source and the target column. Received: {list(columns)}"
            )
        table = read_columns(src, list(columns), text=list(columns), encoding=encoding)
        pairs = list(zip(table[columns[0]], table[columns[1]]))
        return from_pairs(pairs, where=f"file `{src}`", **options)
    tgt = Path(tgt)
    if not tgt.is_file():
        raise DataError(f"parallel text file `{tgt}` not found.")
    try:
        a = src.read_text(encoding=encoding).splitlines()
        b = tgt.read_text(encoding=encoding).splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"cannot decode `{src}` / `{tgt}` as {encoding}: {exc}") from exc
    if len(a) != len(b):
        raise DataError(
            f"parallel files must have one line per pair: `{src}` has {len(a)} lines, `{tgt}` has {len(b)}."
        )
    return from_pairs(list(zip(a, b)), where=f"`{src}` / `{tgt}`", **options)
