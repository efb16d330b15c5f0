"""Sources: plain text for language modelling, and labelled texts (sequence classification)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from nnblocks.data.batching import pad_sequences
from nnblocks.data.bundle import DataBundle
from nnblocks.data.sources._common import encode_labels
from nnblocks.data.sources._tokens import make_tokenizer
from nnblocks.data.sources.records import read_columns
from nnblocks.data.splits import make_splits
from nnblocks.data.tasks import LanguageModelTask, SequenceClassificationTask
from nnblocks.data.tensors import TensorData
from nnblocks.errors import DataError

__all__ = ["from_documents", "from_text_files", "from_texts", "from_text_table"]


def _windows(ids: list[int], block_size: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A token stream -> non-overlapping ``(inputs [N, T], next tokens [N, T])`` windows.

    Window i covers tokens ``i*T .. i*T+T``; its targets are the same positions shifted by
    one. The tail is padded with ``pad_id`` (the loss ignores pad targets), so no text is lost.
    """
    stream = torch.tensor(ids, dtype=torch.long)
    n = max(1, -(-(len(stream) - 1) // block_size))
    stream = torch.nn.functional.pad(stream, (0, n * block_size + 1 - len(stream)), value=pad_id)
    x = stream[:-1].view(n, block_size)  # [N, T]
    y = stream[1:].view(n, block_size)  # [N, T]
    return x.clone(), y.clone()


def _position_split(documents: list[str], valid: float, test: float) -> dict[str, list[str]]:
    """Few long documents: the last ``test`` share of each is test, the ``valid`` share before it valid."""
    out: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for doc in documents:
        n = len(doc)
        a, b = int(n * (1 - valid - test)), int(n * (1 - test))
        out["train"].append(doc[:a])
        out["valid"].append(doc[a:b])
        out["test"].append(doc[b:])
    return out


def from_documents(
    documents: Sequence[str],
    *,
    tokenizer: Any = "char",
    block_size: int = 128,
    split: Any = "auto",
    names: Sequence[str] | None = None,
    where: str = "documents",
    info: dict[str, Any] | None = None,
) -> DataBundle:
    """A language-modelling DataBundle from texts.

    Each split's documents are tokenized (tokenizer fitted on the training documents only),
    joined with an EOS between documents, and cut into non-overlapping windows of
    ``block_size`` tokens: ``TensorData(tokens [N, T], next [N, T])``, ``n_inputs=1``.

    Args:
        documents: the texts.
        tokenizer: a tokenizer spec (``"char"``, ``{"name": "char", "min_freq": 5}``,
            ``"bpe"``) or a Tokenizer.
        block_size: tokens per window (``T``; offered as the model's ``max_len``).
        split: ``"auto"``: with 10 or more documents, whole documents go to one split
            (10% valid, 10% test, by a seeded shuffle) so no window straddles two splits;
            with fewer, the last 10% of each document is test and the 10% before it valid.
            Or a split spec over documents (``make_splits``).
        names: document names (e.g. file paths), shown in messages and ``info``.
        where: the data's name in messages.
        info: facts stored in ``bundle.info``.

    Raises:
        DataError: no text, a bad block size, or an empty split.

    Example:
        >>> bundle = from_documents(["abc " * 200], block_size=16)
        >>> bundle.train[0][0].shape
        torch.Size([16])
    """
    documents = list(documents)
    if not documents or not any(documents):
        raise DataError(f"{where}: no text given.")
    if block_size < 1:
        raise DataError(f"{where}: `block_size` must be >= 1. Received: {block_size}")
    if split == "auto" and len(documents) < 10:
        texts = _position_split(documents, 0.1, 0.1)
    else:
        spec = {"name": "random", "valid": 0.1, "test": 0.1} if split == "auto" else split
        splits = make_splits(spec, len(documents), items=names or documents, path=f"{where}.split")
        texts = {name: [documents[i] for i in idx.tolist()] for name, idx in splits.items()}
    tok = make_tokenizer(tokenizer, texts["train"], path=f"{where}.tokenizer")
    made: dict[str, Any] = {}
    for name, docs in texts.items():
        ids: list[int] = []
        for d in docs:
            ids.extend(tok.encode(d, eos=True))
        if len(ids) < 2:
            made[name] = None
            if name == "train":
                raise DataError(f"{where}: the training split has no text.")
            continue
        x, y = _windows(ids, block_size, tok.pad_id)
        made[name] = TensorData(x, y, n_inputs=1, names=["tokens", "next"])
    return DataBundle.from_splits(
        made,
        task=LanguageModelTask(tok, block_size=block_size),
        tokenizers={"text": tok},
        info={"source": where, "documents": len(documents), **(info or {})},
    )


def from_text_files(
    paths: str | Path | Sequence[str | Path],
    *,
    encoding: str = "utf-8",
    **options: Any,
) -> DataBundle:
    """A language-modelling DataBundle from text files (``from_documents``, one per file).

    Args:
        paths: a file, a folder (every ``*.txt`` below it) or a list of files.
        encoding: the files' text encoding (undecodable bytes are replaced).
        **options: the options of ``from_documents`` (tokenizer, block_size, split).

    Raises:
        DataError: a missing file or a folder without ``.txt`` files.

    Example:
        >>> bundle = from_text_files("corpus/", tokenizer="char", block_size=256)  # doctest: +SKIP
    """
    if isinstance(paths, (str, Path)):
        root = Path(paths)
        if root.is_dir():
            files = sorted(root.rglob("*.txt"))
            if not files:
                raise DataError(f"text folder `{root}` holds no .txt files.")
        else:
            files = [root]
    else:
        files = [Path(p) for p in paths]
    for f in files:
        if not f.is_file():
            raise DataError(f"text file `{f}` not found.")
    docs = [f.read_text(encoding=encoding, errors="replace") for f in files]
    return from_documents(
        docs, names=[str(f) for f in files], where=f"text files ({len(files)})", **options
    )


def from_texts(
    texts: Sequence[str],
    labels: Sequence[Any],
    *,
    tokenizer: Any = "word",
    split: Any = None,
    max_len: int | None = None,
    classes: Sequence[Any] | None = None,
    where: str = "texts",
) -> DataBundle:
    """A sequence-classification DataBundle: ``(tokens [N, T], label [N])``.

    Args:
        texts: one text per example.
        labels: one class label per example.
        tokenizer: a tokenizer spec or Tokenizer, fitted on the training texts.
        split: a split spec; default stratified, 20% validation.
        max_len: truncate token sequences to this length (default: the longest).
        classes: the class list (default: sorted training labels).
        where: the data's name in messages.

    Raises:
        DataError: texts and labels of different lengths, an empty split, a validation or
            test label absent from training.

    Example:
        >>> bundle = from_texts(["good film", "bad film"] * 10, ["pos", "neg"] * 10)
        >>> bundle.task.model_args["num_classes"]
        2
    """
    if len(texts) != len(labels):
        raise DataError(f"{where}: {len(texts)} texts but {len(labels)} labels.")
    splits = make_splits(
        split,
        len(texts),
        labels=list(labels),
        default={"name": "stratified", "valid": 0.2},
        path=f"{where}.split",
    )
    y, classes = encode_labels(list(labels), splits, where=where, classes=classes)
    tok = make_tokenizer(
        tokenizer, (texts[i] for i in splits.train.tolist()), path=f"{where}.tokenizer"
    )
    rows = [tok.encode(t)[:max_len] if max_len else tok.encode(t) for t in texts]
    tokens, _ = pad_sequences(rows, pad_id=tok.pad_id)
    made = {
        name: TensorData(tokens[idx], y[idx], trim={0: tok.pad_id}, names=["tokens", "label"])
        if len(idx)
        else None
        for name, idx in splits.items()
    }
    task = SequenceClassificationTask(
        len(classes), tokenizer=tok, classes=classes, max_len=tokens.shape[1]
    )
    return DataBundle.from_splits(
        made,
        task=task,
        tokenizers={"text": tok},
        info={"source": where},
    )


def from_text_table(
    path: str | Path,
    *,
    text: str = "text",
    label: str = "label",
    encoding: str = "utf-8",
    **options: Any,
) -> DataBundle:
    """A sequence-classification DataBundle from a file of labelled texts (``from_texts``).

    Args:
        path: a CSV or TSV file with a header row, or JSON lines (``{"text": ..., "label": ...}``
            a line).
        text: the column holding the texts.
        label: the column holding the class labels.
        encoding: the file's text encoding.
        **options: the options of ``from_texts`` (tokenizer, split, max_len, classes).

    Raises:
        DataError: a missing file or column, a text column holding something other than
            text, or any error of ``from_texts`` (messages name the file).

    Example:
        >>> bundle = from_text_table("reviews.jsonl", text="review", label="stars")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"text file `{path}` not found.")
    table = read_columns(path, [text, label], text=[text], encoding=encoding)
    labels = table[label]
    empty = [i for i, v in enumerate(labels) if v is None or v == ""]
    if empty:
        raise DataError(
            f"`{path}`: label column `{label}` is empty in row(s) {[i + 1 for i in empty[:5]]}."
        )
    return from_texts(table[text], labels, where=f"file `{path}`", **options)
