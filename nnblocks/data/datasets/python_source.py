"""Python source: a character-level language-modelling corpus from the standard library.

Every Python installation ships its standard library as ``.py`` files, so this corpus is
on every machine without a download. (Its exact content follows the Python version.)
"""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path
from typing import Any

from nnblocks.data.bundle import DataBundle
from nnblocks.data.sources.text import from_documents
from nnblocks.data.splits import split_by_indices
from nnblocks.errors import DataError
from nnblocks.registry import register

__all__ = ["python_source", "stdlib_files"]

# Test suites, IDLE and installed packages are not "the standard library's own sources".
_SKIP = {
    "test",
    "tests",
    "idle_test",
    "idlelib",
    "site-packages",
    "dist-packages",
    "__pycache__",
    "turtledemo",
}


def stdlib_files(root: str | Path | None = None) -> list[Path]:
    """The standard library's ``.py`` files, sorted by relative path (tests excluded).

    Raises:
        DataError: the folder holds no ``.py`` files.
    """
    base = Path(root or sysconfig.get_paths()["stdlib"])
    files: list[Path] = []
    # os.walk with pruning: site-packages alone can hold far more files than the stdlib
    for folder, dirs, names in os.walk(base):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP)
        files.extend(Path(folder) / n for n in names if n.endswith(".py"))
    files.sort(key=lambda p: p.relative_to(base).as_posix())
    if not files:
        raise DataError(f"dataset `python_source`: no .py files found under `{base}`.")
    return files


@register("dataset", "python_source")
def python_source(
    block_size: int = 128,
    max_chars: int = 2_000_000,
    valid: float = 0.05,
    test: float = 0.05,
    min_freq: int = 5,
    tokenizer: Any = None,
    seed: int = 0,
) -> DataBundle:
    """Character-level language modelling on the Python standard library's sources.

    Files are shuffled with ``seed`` and taken whole — test files first until ``test`` of
    ``max_chars`` is filled, then valid, then train — so no file (and no window of text)
    is in two splits.

    Args:
        block_size: characters per example (``T``; offered as the model's ``max_len``).
        max_chars: about how many characters to read in all.
        valid, test: shares of ``max_chars`` for the validation and test files.
        min_freq: characters seen fewer times in training become ``<unk>``.
        tokenizer: a tokenizer spec instead of characters (e.g. ``{"name": "bpe",
            "vocab_size": 2000}``); default ``{"name": "char", "min_freq": min_freq}``.
        seed: seed of the file order.

    Returns:
        a language-modelling DataBundle: ``(tokens [N, T], next [N, T])``, ``vocab_size``.

    Raises:
        DataError: too little text for the requested splits.

    Example:
        >>> bundle = nnblocks.data.load("python_source", block_size=256)  # doctest: +SKIP
    """
    import numpy as np

    if not (0 <= valid < 1 and 0 <= test < 1 and valid + test < 1):
        raise DataError(
            f"dataset `python_source`: valid + test must be below 1. Received: {valid}, {test}"
        )
    files = stdlib_files()
    order = np.random.default_rng(seed).permutation(len(files)).tolist()
    budgets = [
        ("test", test * max_chars),
        ("valid", valid * max_chars),
        ("train", (1 - valid - test) * max_chars),
    ]
    docs: list[str] = []
    names: list[str] = []
    owner: list[str] = []
    stage, filled = 0, 0
    for i in order:
        while stage < len(budgets) and filled >= budgets[stage][1]:
            stage, filled = stage + 1, 0
        if stage == len(budgets):
            break
        text = files[i].read_text(encoding="utf-8", errors="replace")
        docs.append(text)
        names.append(files[i].name)
        owner.append(budgets[stage][0])
        filled += len(text)
    index = {
        name: [i for i, o in enumerate(owner) if o == name] for name in ("train", "valid", "test")
    }
    splits = split_by_indices(
        len(docs), train=index["train"], valid=index["valid"], test=index["test"]
    )
    return from_documents(
        docs,
        tokenizer=tokenizer or {"name": "char", "min_freq": min_freq},
        block_size=block_size,
        split=splits,
        names=names,
        where="dataset `python_source`",
        info={"files": {k: [names[i] for i in v] for k, v in index.items()}},
    )
