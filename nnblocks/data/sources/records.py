"""Reading named columns from a record file: CSV, TSV or JSON lines, chosen by the suffix."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nnblocks.errors import DataError

__all__ = ["RECORD_SUFFIXES", "read_columns"]

RECORD_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}


def read_columns(
    path: Path, columns: Sequence[str], *, text: Sequence[str] = (), encoding: str = "utf-8"
) -> dict[str, list[Any]]:
    """The values of ``columns`` in a CSV/TSV (with a header row) or a JSON-lines file.

    Args:
        path: the file; ``.csv``, ``.tsv``/``.tab`` or ``.jsonl``/``.json`` (one object a line).
        columns: the columns to read.
        text: those of ``columns`` that must hold strings (checked row by row in JSON lines;
            CSV fields are strings by nature).
        encoding: the file's text encoding.

    Returns:
        ``{column: [value per row]}``.

    Raises:
        DataError: an unknown suffix, an unreadable file, a missing column (listing the
            file's columns), a text column holding something else (naming the row), or a
            file without rows.
    """
    fmt = RECORD_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"`{path}`: expected a {', '.join(sorted(RECORD_SUFFIXES))} file. "
            f"Received the suffix {path.suffix!r}."
        )
    try:
        rows, header = (
            _read_jsonl(path, encoding) if fmt == "jsonl" else _read_table(path, fmt, encoding)
        )
    except UnicodeDecodeError as exc:
        raise DataError(f"`{path}`: cannot decode the file as {encoding}: {exc}") from exc
    except OSError as exc:
        raise DataError(f"`{path}`: cannot read the file: {exc}") from exc
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(
            f"`{path}`: column(s) {missing} not found. Columns: {header}"
            + (" (a CSV/TSV file needs a header row)" if fmt != "jsonl" else "")
        )
    if not rows:
        raise DataError(f"`{path}`: the file has no rows.")
    out: dict[str, list[Any]] = {c: [] for c in columns}
    for i, row in enumerate(rows):
        for c in columns:
            if c not in row:
                raise DataError(f"`{path}`: row {i + 1} has no column `{c}`.")
            value = row[c]
            if c in text and not isinstance(value, str):
                raise DataError(
                    f"`{path}`: column `{c}` must hold text; row {i + 1} holds "
                    f"{value!r:.60} ({type(value).__name__})."
                )
            out[c].append(value)
    return out


def _read_table(path: Path, fmt: str, encoding: str) -> tuple[list[dict[str, Any]], list[str]]:
    with open(path, encoding=encoding, newline="") as f:
        # TSV fields are taken literally (parallel text holds quotes); CSV follows RFC 4180.
        reader = (
            csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            if fmt == "tsv"
            else csv.DictReader(f)
        )
        try:
            rows = list(reader)
        except csv.Error as exc:
            raise DataError(f"`{path}`: not a valid {fmt.upper()} file: {exc}") from exc
        header = list(reader.fieldnames or [])
    return rows, header


def _read_jsonl(path: Path, encoding: str) -> tuple[list[dict[str, Any]], list[str]]:
    rows: list[dict[str, Any]] = []
    header: dict[str, None] = {}
    with open(path, encoding=encoding) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"`{path}`: line {n} is not valid JSON: {exc}") from exc
            if not isinstance(row, dict):
                raise DataError(
                    f"`{path}`: line {n} must be a JSON object. Received: {type(row).__name__}"
                )
            rows.append(row)
            header.update(dict.fromkeys(row))
    return rows, list(header)
