"""Tensors to and from safetensors files: atomic writes, strictly validated reads.

safetensors refuses tensors that share memory, but tied weights (an embedding and the
output head, Press & Wolf 2017) are exactly that. ``write_tensors`` stores each shared
tensor once and records the other names as aliases in the metadata; ``read_tensors``
restores them, so ``read_tensors(write_tensors(sd))`` gives back every key of a state dict.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from nnblocks.errors import CheckpointError
from nnblocks.io._json import parse_json
from nnblocks.io.atomic import atomic_path
from nnblocks.io.safetensors_check import DTYPES, Header, check_file

__all__ = [
    "ALIASES_KEY",
    "describe_tensors",
    "read_metadata",
    "read_tensors",
    "serialize_tensors",
    "write_tensors",
]

ALIASES_KEY = "nnblocks.aliases"  # metadata key: JSON {alias name: stored name}


def _view_key(t: torch.Tensor) -> tuple[Any, ...]:
    return (t.dtype, tuple(t.shape), t.stride(), t.storage_offset())


def _dedupe(
    path: Path, tensors: Mapping[str, Any]
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Split ``tensors`` into the ones to store and ``{alias: stored name}``."""
    stored: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    by_storage: dict[tuple[Any, int], dict[tuple[Any, ...], str]] = {}
    for name, t in tensors.items():
        if not isinstance(name, str):
            raise CheckpointError(f"`{path}`: tensor names must be strings, received {name!r}.")
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(
                f"`{path}`: `{name}` must be a tensor, received {type(t).__name__}."
            )
        if t.layout is not torch.strided:
            raise CheckpointError(
                f"`{path}`: `{name}` is a {t.layout} tensor; expected a dense (strided) tensor."
            )
        t = t.detach()
        ptr = t.untyped_storage().data_ptr()
        if ptr == 0 or t.numel() == 0:  # empty tensors own no bytes to share
            stored[name] = t
            continue
        views = by_storage.setdefault((t.device, ptr), {})
        same = views.get(_view_key(t))
        if same is not None:
            aliases[name] = same
        elif views:
            # Shares memory with a different view (a slice of another tensor): store a copy,
            # since a safetensors file holds each byte once.
            stored[name] = t.clone()
        else:
            views[_view_key(t)] = name
            stored[name] = t
    return stored, aliases


def write_tensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write ``tensors`` to a safetensors file atomically; shared tensors are stored once.

    Args:
        path: the file to write (replaced atomically if it exists).
        tensors: name -> dense tensor, on any device (copied to the CPU).
        metadata: optional str -> str notes kept in the header. The key
            ``"nnblocks.aliases"`` is reserved.

    Raises:
        CheckpointError: a name or value of the wrong type, or the file cannot be written
            (the previous file is left unchanged).

    Example:
        >>> write_tensors("model.safetensors", model.state_dict())   # doctest: +SKIP
    """
    with atomic_path(path) as temp:
        serialize_tensors(temp, tensors, metadata, name=path)


def serialize_tensors(
    file: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
    *,
    name: str | os.PathLike[str] | None = None,
) -> None:
    """Write a safetensors file in place (not atomic): for a file already staged by
    ``nnblocks.io.atomic.atomic_files``. ``name`` is what messages call the file.

    Raises:
        CheckpointError: as :func:`write_tensors`.
    """
    path = Path(name if name is not None else file)
    meta = dict(metadata or {})
    for key, value in meta.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise CheckpointError(
                f"`{path}`: metadata maps strings to strings. Received: {key!r}: {value!r:.80}"
            )
    if ALIASES_KEY in meta:
        raise CheckpointError(f"`{path}`: the metadata key `{ALIASES_KEY}` is reserved.")
    stored, aliases = _dedupe(path, tensors)
    if aliases:
        meta[ALIASES_KEY] = json.dumps(aliases, sort_keys=True)
    prepared = {key: t.to("cpu").contiguous() for key, t in stored.items()}
    try:
        save_file(prepared, file, metadata=meta or None)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"could not write `{path}`: {exc}.") from exc


def _aliases(path: Path, header: Header) -> dict[str, str]:
    raw = header.metadata.get(ALIASES_KEY)
    if raw is None:
        return {}
    aliases = parse_json(raw.encode("utf-8"), where=f"`{ALIASES_KEY}` in `{path}`")
    if not isinstance(aliases, dict):
        raise CheckpointError(f"`{path}`: `{ALIASES_KEY}` must be a JSON object.")
    for alias, target in aliases.items():
        if alias in header.entries or target not in header.entries:
            raise CheckpointError(
                f"`{path}`: alias `{alias}` -> `{target!s:.80}` must name a new key and a "
                "stored tensor."
            )
    return aliases


def _identity(path: Path) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def read_tensors(
    path: str | os.PathLike[str], *, device: str | int = "cpu"
) -> dict[str, torch.Tensor]:
    """Read a safetensors file after validating it strictly (see ``safetensors_check``).

    Args:
        path: the file.
        device: where the tensors go (``"cpu"``, ``"cuda:0"``, ...).

    Returns:
        name -> tensor, aliases (tied tensors stored once) restored as the same tensor.

    Raises:
        CheckpointError: the file is missing or invalid (naming the file and the problem),
            or it changed while being read.

    Example:
        >>> model.load_state_dict(read_tensors("model.safetensors"))   # doctest: +SKIP
    """
    path = Path(path)
    before = _identity(path) if path.exists() else None
    header = check_file(path)
    aliases = _aliases(path, header)
    try:
        tensors = load_file(path, device=device)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"`{path}` could not be read by safetensors: {exc}.") from exc
    # The file was validated, then opened again by safetensors: make sure both saw one file.
    if before is None or _identity(path) != before or set(tensors) != set(header.entries):
        raise CheckpointError(f"`{path}` changed while it was being read; try again.")
    for alias, target in aliases.items():
        tensors[alias] = tensors[target]
    return tensors


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The user metadata of a safetensors file (validated; reserved keys left out).

    Raises:
        CheckpointError: as :func:`read_tensors`.
    """
    header = check_file(path)
    return {k: v for k, v in header.metadata.items() if k != ALIASES_KEY}


def describe_tensors(
    path: str | os.PathLike[str],
) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """``{name: (shape, dtype)}`` of every tensor in the file, aliases included, read from
    the validated header alone (no tensor data is read).

    Raises:
        CheckpointError: as :func:`read_tensors`.
    """
    path = Path(path)
    header = check_file(path)
    out = {name: (e.shape, DTYPES[e.dtype]) for name, e in header.entries.items()}
    for alias, target in _aliases(path, header).items():
        out[alias] = out[target]
    return out
