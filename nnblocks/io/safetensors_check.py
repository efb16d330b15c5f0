"""Strict validation of a safetensors file before any library parses it.

A safetensors file is ``[u64 little-endian header length N][N bytes of UTF-8 JSON][data]``
(https://github.com/huggingface/safetensors, "Format"). The header maps tensor names to
``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the data area) and
may hold ``"__metadata__"``, a str -> str dict. Every field is checked here with bounded
reads, so a hostile file (a renamed pickle, a lying length field, overlapping or
out-of-range offsets, a shape that overflows) is refused before it can make anyone allocate
memory or parse more than the file holds.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, BinaryIO

import torch

from nnblocks.errors import CheckpointError
from nnblocks.io._json import parse_json

__all__ = ["DTYPES", "MAX_HEADER_BYTES", "Header", "TensorEntry", "check_file"]

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's own limit
_INT64_MAX = 2**63 - 1
_METADATA = "__metadata__"
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}

# safetensors dtype name -> torch dtype; only names this torch build knows are accepted.
_DTYPE_NAMES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "C64": "complex64",
}
DTYPES: dict[str, torch.dtype] = {
    st: getattr(torch, name) for st, name in _DTYPE_NAMES.items() if hasattr(torch, name)
}


@dataclasses.dataclass(frozen=True)
class TensorEntry:
    """One tensor as the header describes it; offsets are relative to the data area."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclasses.dataclass(frozen=True)
class Header:
    """A validated header: tensors in file order, metadata, and the sizes of both areas."""

    entries: dict[str, TensorEntry]
    metadata: dict[str, str]
    header_size: int
    data_size: int


def _bad(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"`{path}` is not a valid safetensors file: {problem}")


def _looks_like(prefix: bytes) -> str:
    # A renamed pickle or torch.save zip shows up here as an absurd length; say what it is.
    if prefix[:1] == b"\x80" and prefix[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return " The file starts like a Python pickle; nnblocks never unpickles it."
    if prefix[:4] == b"PK\x03\x04":
        return " The file starts like a zip archive (torch.save); nnblocks never unpickles it."
    return ""


def _read_header_bytes(f: BinaryIO, path: Path, size: int) -> bytes:
    if size < 8:
        raise _bad(path, f"expected at least 8 bytes (the header length), received {size} bytes.")
    prefix = f.read(8)
    if len(prefix) != 8:
        raise _bad(path, "the file ended inside the 8-byte header length.")
    n = int.from_bytes(prefix, "little")
    if n > MAX_HEADER_BYTES:
        raise _bad(
            path,
            f"the header length field claims {n} bytes, over the limit of "
            f"{MAX_HEADER_BYTES} bytes.{_looks_like(prefix)}",
        )
    if n > size - 8:
        raise _bad(
            path,
            f"the header length field claims {n} bytes, but only {size - 8} bytes follow it."
            f"{_looks_like(prefix)}",
        )
    if n < 2:
        raise _bad(path, f"a header of {n} bytes cannot hold a JSON object.")
    raw = f.read(n)  # bounded: n <= min(100 MB, file size - 8)
    if len(raw) != n:
        raise _bad(path, f"the file ended inside the {n}-byte header (it changed while read?).")
    return raw


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_metadata(path: Path, value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _bad(path, f"`__metadata__` must be an object, received {type(value).__name__}.")
    for key, item in value.items():
        if not isinstance(item, str):
            raise _bad(
                path,
                f"`__metadata__` maps strings to strings; `{key}` holds "
                f"{type(item).__name__} {item!r:.40}.",
            )
    return value


def _numel(path: Path, name: str, shape: tuple[int, ...], itemsize: int) -> int:
    if 0 in shape:
        return 0
    count = 1
    for dim in shape:
        count *= dim
        if count * itemsize > _INT64_MAX:  # exit early: a hostile shape can be very long
            raise _bad(
                path,
                f"tensor `{name}` has shape {list(shape)}, whose size in bytes overflows int64.",
            )
    return count


def _check_entry(path: Path, name: str, value: Any, data_size: int) -> TensorEntry:
    where = f"tensor `{name}`"
    if not isinstance(value, dict):
        raise _bad(path, f"{where}: expected an object, received {type(value).__name__}.")
    if set(value) != _ENTRY_KEYS:
        raise _bad(
            path,
            f"{where}: expected exactly the keys {sorted(_ENTRY_KEYS)}, received {sorted(value)}.",
        )
    dtype = value["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise _bad(path, f"{where}: unknown dtype {dtype!r}. Known dtypes: {', '.join(DTYPES)}.")
    shape = value["shape"]
    if not isinstance(shape, list) or not all(_is_int(d) and 0 <= d <= _INT64_MAX for d in shape):
        raise _bad(
            path,
            f"{where}: expected a shape of non-negative int64 integers, received {shape!r:.200}.",
        )
    offsets = value["data_offsets"]
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
        raise _bad(path, f"{where}: expected data_offsets [begin, end], received {offsets!r:.200}.")
    begin, end = offsets
    if begin < 0 or end < 0:
        raise _bad(path, f"{where}: negative data_offsets {offsets}.")
    if begin > end:
        raise _bad(path, f"{where}: data_offsets {offsets} end before they begin.")
    if end > data_size:
        raise _bad(
            path,
            f"{where}: data_offsets {offsets} reach past the data area of {data_size} bytes "
            "(the file may be truncated).",
        )
    itemsize = DTYPES[dtype].itemsize
    nbytes = _numel(path, name, tuple(shape), itemsize) * itemsize
    if nbytes != end - begin:
        raise _bad(
            path,
            f"{where}: shape {shape} of {dtype} needs {nbytes} bytes, but data_offsets "
            f"{offsets} hold {end - begin}.",
        )
    return TensorEntry(name, dtype, tuple(shape), begin, end)


def _check_layout(path: Path, entries: dict[str, TensorEntry], data_size: int) -> None:
    # Tensors must tile the data area exactly: no overlap (two names, one buffer), no gap
    # (bytes no tensor accounts for could smuggle anything).
    cursor, previous = 0, None
    for entry in sorted(entries.values(), key=lambda e: (e.begin, e.end)):
        if entry.begin < cursor:
            raise _bad(path, f"tensors `{previous}` and `{entry.name}` overlap in the data area.")
        if entry.begin > cursor:
            raise _bad(path, f"bytes {cursor}..{entry.begin} of the data area belong to no tensor.")
        cursor, previous = entry.end, entry.name
    if cursor != data_size:
        raise _bad(
            path,
            f"the tensors cover {cursor} bytes, but the data area holds {data_size} bytes "
            "(trailing bytes belong to no tensor).",
        )


def check_file(path: str | os.PathLike[str]) -> Header:
    """Validate a safetensors file's framing and header without trusting any field.

    Args:
        path: the file.

    Returns:
        The validated :class:`Header`.

    Raises:
        CheckpointError: the file is missing, unreadable, or anything about it is wrong; the
            message names the file and the problem.

    Example:
        >>> header = check_file("model.safetensors")   # doctest: +SKIP
        >>> header.entries["head.weight"].shape
        (100, 64)
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            raw = _read_header_bytes(f, path, size)
    except FileNotFoundError:
        raise CheckpointError(f"`{path}` is missing: expected a safetensors file.") from None
    except IsADirectoryError:
        raise CheckpointError(f"`{path}` is a folder: expected a safetensors file.") from None
    except OSError as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"`{path}` could not be read: {exc}.") from exc
    if raw[:1] != b"{":
        raise _bad(path, f"the header must start with '{{', received {raw[:1]!r}.")
    header = parse_json(raw, where=f"the header of `{path}`")
    if not isinstance(header, dict):
        raise _bad(path, f"the header must be a JSON object, received {type(header).__name__}.")
    data_size = size - 8 - len(raw)
    metadata: dict[str, str] = {}
    entries: dict[str, TensorEntry] = {}
    for name, value in header.items():
        if name == _METADATA:
            metadata = _check_metadata(path, value)
        else:
            entries[name] = _check_entry(path, name, value, data_size)
    _check_layout(path, entries, data_size)
    return Header(entries, metadata, len(raw), data_size)
