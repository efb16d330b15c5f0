"""A folder's manifest: the SHA-256 and size of every file, written last, checked first.

``manifest.json`` is the commit record of a checkpoint folder. It is written after every
file it lists, so a folder whose save was interrupted has no manifest (or an older one whose
hashes no longer match) and is refused instead of half loaded. It also catches bit rot and
tampering: one flipped byte anywhere changes a hash.

Format::

    {"format": "nnblocks.manifest", "version": 1,
     "files": {"model.safetensors": {"sha256": "ab12...", "size": 1234}, ...}}
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from nnblocks.errors import CheckpointError
from nnblocks.io._json import parse_json, read_small_file
from nnblocks.io.atomic import atomic_write_bytes

__all__ = [
    "MANIFEST_NAME",
    "dump_manifest",
    "file_entry",
    "make_manifest",
    "verify_manifest",
    "write_manifest",
]

MANIFEST_NAME = "manifest.json"
_FORMAT = "nnblocks.manifest"
_VERSION = 1
_MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_CHUNK = 1 << 20


def file_entry(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"sha256": hex, "size": bytes}`` of one file, read in 1 MiB chunks.

    Raises:
        CheckpointError: the file is missing or unreadable.
    """
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        raise CheckpointError(f"`{path}` is missing.") from None
    except OSError as exc:
        raise CheckpointError(f"`{path}` could not be read: {exc}.") from exc
    return {"sha256": digest.hexdigest(), "size": size}


def _check_name(folder: Path, name: Any) -> str:
    # Names are relative POSIX paths inside the folder: a hostile manifest must not make us
    # hash (or vouch for) files elsewhere on the disk.
    ok = isinstance(name, str) and name and "\\" not in name and "\x00" not in name
    if ok:
        parts = PurePosixPath(name).parts
        ok = (
            not PurePosixPath(name).is_absolute()
            and all(p not in ("", ".", "..") for p in parts)
            and "/".join(parts) == name
            and name != MANIFEST_NAME
        )
    if not ok:
        raise CheckpointError(
            f"`{folder / MANIFEST_NAME}`: expected file names relative to the folder "
            f"(no '..', no absolute paths, not the manifest itself). Received: {name!r:.200}"
        )
    return name


def make_manifest(files: Mapping[str, str | os.PathLike[str]]) -> dict[str, Any]:
    """A manifest for ``{name in the folder: path to read it from now}``.

    The paths may differ from the names: a staged save hashes temporary files that will be
    renamed to the names afterwards.
    """
    entries = {name: file_entry(source) for name, source in sorted(files.items())}
    return {"format": _FORMAT, "version": _VERSION, "files": entries}


def dump_manifest(manifest: Mapping[str, Any]) -> bytes:
    """The bytes of ``manifest.json`` (stable key order, one file per line)."""
    return (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode("utf-8")


def write_manifest(folder: str | os.PathLike[str], files: Iterable[str]) -> dict[str, Any]:
    """Hash ``files`` (names relative to ``folder``) and write ``folder/manifest.json`` atomically.

    Call it after every listed file is written: the manifest is the commit record.

    Args:
        folder: the checkpoint folder.
        files: names of the files to list, e.g. ``["model.safetensors", "spec.json"]``.

    Returns:
        The manifest written.

    Raises:
        CheckpointError: a name outside the folder, a missing file, or the manifest cannot
            be written.

    Example:
        >>> write_manifest(folder, ["model.safetensors", "optimizer.safetensors"])  # doctest: +SKIP
    """
    folder = Path(folder)
    names = [_check_name(folder, name) for name in files]
    manifest = make_manifest({name: folder / name for name in names})
    atomic_write_bytes(folder / MANIFEST_NAME, dump_manifest(manifest))
    return manifest


def _read_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise CheckpointError(
            f"`{path}` is missing: expected a folder written by nnblocks (its manifest is "
            "written last, so a save that was interrupted leaves none)."
        )
    manifest = parse_json(
        read_small_file(path, _MAX_MANIFEST_BYTES, what="the manifest"), where=f"`{path}`"
    )
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
        raise CheckpointError(f"`{path}`: expected an nnblocks manifest (format `{_FORMAT}`).")
    if manifest.get("version") != _VERSION:
        raise CheckpointError(
            f"`{path}`: manifest version {manifest.get('version')!r:.40} is not supported; "
            f"expected {_VERSION} (was it written by a newer nnblocks?)."
        )
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise CheckpointError(f"`{path}`: expected `files` to be an object.")
    for name, entry in files.items():
        _check_name(folder, name)
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        size = entry.get("size") if isinstance(entry, dict) else None
        if not (
            isinstance(digest, str)
            and len(digest) == 64
            and all(c in "0123456789abcdef" for c in digest)
            and isinstance(size, int)
            and not isinstance(size, bool)
            and size >= 0
        ):
            raise CheckpointError(
                f"`{path}`: the entry of `{name}` must be {{'sha256': 64 hex digits, "
                f"'size': bytes}}. Received: {entry!r:.200}"
            )
    return files


def verify_manifest(
    folder: str | os.PathLike[str], *, require: Iterable[str] = ()
) -> dict[str, dict[str, Any]]:
    """Check every file the manifest lists: present, inside the folder, same size and SHA-256.

    Args:
        folder: the checkpoint folder.
        require: names that must be listed (a reader verifies what it is about to read).

    Returns:
        ``{name: {"sha256", "size"}}`` as listed.

    Raises:
        CheckpointError: a missing or malformed manifest, a required file not listed, or a
            listed file that is missing, outside the folder, or of another size or hash
            (naming the file, what was expected and what was found).

    Example:
        >>> verify_manifest(folder, require=["model.safetensors"])   # doctest: +SKIP
    """
    folder = Path(folder)
    files = _read_manifest(folder)
    for name in require:
        if name not in files:
            raise CheckpointError(
                f"`{folder / MANIFEST_NAME}` does not list `{name}`: expected every file that "
                "is read to be verified."
            )
    root = folder.resolve()
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"`{path}` is listed in the manifest but missing.")
        if not path.resolve().is_relative_to(root):  # a symlink out of the folder
            raise CheckpointError(f"`{path}` points outside the checkpoint folder `{folder}`.")
        size = path.stat().st_size
        if size != expected["size"]:
            raise CheckpointError(
                f"`{path}` is {size} bytes, but the manifest expects {expected['size']} bytes "
                "(truncated or replaced after saving)."
            )
        found = file_entry(path)
        if found["sha256"] != expected["sha256"]:
            raise CheckpointError(
                f"`{path}` is corrupt: its SHA-256 is {found['sha256']}, but the manifest "
                f"expects {expected['sha256']}."
            )
    return files
