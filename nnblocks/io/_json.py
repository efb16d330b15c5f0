"""Strict, bounded JSON reading for files that may be hostile.

Python's ``json`` keeps the last of two equal keys and accepts ``NaN``; a checkpoint whose
header says one thing to us and another to a different reader is a classic smuggling trick,
so duplicates and non-standard constants are refused here, once, for every reader in
``nnblocks.io``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nnblocks.errors import CheckpointError

__all__ = ["parse_json", "read_small_file"]


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def parse_json(data: bytes, *, where: str) -> Any:
    """Parse UTF-8 JSON, refusing duplicate keys, NaN/Infinity and absurd nesting.

    Args:
        data: the raw bytes.
        where: what the bytes are, for messages (``"the header of `model.safetensors`"``).

    Returns:
        The parsed value.

    Raises:
        CheckpointError: invalid UTF-8, invalid JSON, a duplicate key or too deep nesting.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(
            f"{where} is not valid UTF-8: expected UTF-8 JSON, received byte "
            f"0x{data[exc.start]:02x} at offset {exc.start}."
        ) from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except _DuplicateKey as exc:
        raise CheckpointError(
            f"{where} names `{exc.key}` twice: expected each key once (a reader that keeps "
            "the first and one that keeps the last would see different files)."
        ) from None
    except RecursionError:
        raise CheckpointError(f"{where} is nested too deeply to be a genuine file.") from None
    except ValueError as exc:  # JSONDecodeError and the constant hook
        raise CheckpointError(f"{where} is not valid JSON: {exc}.") from None


def read_small_file(path: str | os.PathLike[str], limit: int, *, what: str) -> bytes:
    """Read a whole file that must be at most ``limit`` bytes, checking the size first.

    Raises:
        CheckpointError: the file is missing, unreadable or larger than ``limit``.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise CheckpointError(
                    f"`{path}` ({what}) is {size} bytes: expected at most {limit} bytes."
                )
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise CheckpointError(f"`{path}` ({what}) is missing.") from None
    except CheckpointError:
        raise
    except OSError as exc:
        raise CheckpointError(f"`{path}` ({what}) could not be read: {exc}.") from exc
    if len(data) > limit:  # it grew after fstat
        raise CheckpointError(f"`{path}` ({what}) is larger than {limit} bytes.")
    return data
