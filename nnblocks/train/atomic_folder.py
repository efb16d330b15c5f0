"""Replace a whole folder atomically: a reader sees the old folder or the new one, complete.

The new folder is written under a temporary name next to its final place (each file
fsynced, the manifest last), then swapped in with one ``renameat2(RENAME_EXCHANGE)``
(Linux >= 3.15), so a process killed at any instant leaves either the complete old folder
or the complete new one at the final path, never a partial file there. Where the kernel or
file system cannot exchange, two renames are used and ``recover`` puts the old folder back
if a crash fell between them.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import torch

from nnblocks.errors import CheckpointError

__all__ = ["write_folder", "recover"]

_TMP = ".tmp-"
_OLD = ".old-"


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_EXCHANGE = _renameat2() if os.name == "posix" else None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths; False where the kernel cannot."""
    if _EXCHANGE is None:
        return False
    rc = _EXCHANGE(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: file system cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


def _siblings(path: Path, marker: str) -> list[Path]:
    prefix = f".{path.name}{marker}"
    try:
        return sorted(p for p in path.parent.iterdir() if p.name.startswith(prefix))
    except OSError:
        return []


def recover(path: Path) -> None:
    """Undo a crash between the two renames of the fallback swap; drop stale temporaries."""
    olds = _siblings(path, _OLD)
    if not path.exists() and olds:
        with contextlib.suppress(OSError):
            os.rename(olds[-1], path)
            olds = olds[:-1]
    for stale in olds + _siblings(path, _TMP):
        shutil.rmtree(stale, ignore_errors=True)


def _fsync_dir(folder: Path) -> None:
    from nnblocks.io.atomic import fsync_dir

    fsync_dir(folder)


def write_folder(
    path: str | os.PathLike[str],
    tensors: dict[str, dict[str, torch.Tensor]],
    files: dict[str, bytes],
) -> Path:
    """Write a folder of safetensors and other files, with a manifest, atomically.

    Args:
        path: the final folder (replaced as a whole if it exists).
        tensors: ``{file name: {tensor name: tensor}}``, each written as safetensors.
        files: ``{file name: bytes}``.

    Returns:
        ``path``.

    Raises:
        CheckpointError: the folder cannot be written (naming it); the old folder, if any,
            is left byte-identical and no temporary folder is left behind.
    """
    from nnblocks.io.atomic import atomic_write_bytes
    from nnblocks.io.manifest import write_manifest
    from nnblocks.io.safetensors_io import write_tensors

    path = Path(path)
    parent = path.parent
    if path.exists() and not path.is_dir():
        raise CheckpointError(
            f"cannot save a checkpoint to `{path}`: it is a file; expected a folder."
        )
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(
            f"could not create the folder `{parent}` for checkpoint `{path.name}`: {exc.strerror or exc}."
        ) from exc
    recover(path)
    tmp = parent / f".{path.name}{_TMP}{secrets.token_hex(6)}"
    try:
        os.mkdir(tmp)
    except OSError as exc:
        raise CheckpointError(
            f"could not write checkpoint `{path}`: {exc.strerror or exc}. Expected a writable "
            f"folder `{parent}`; the previous checkpoint, if any, is unchanged."
        ) from exc
    try:
        for name, group in tensors.items():
            write_tensors(tmp / name, group)
        for name, data in files.items():
            atomic_write_bytes(tmp / name, data)
        write_manifest(tmp, [*tensors, *files])
        _fsync_dir(tmp)
        if path.exists():
            if _exchange(tmp, path):
                _fsync_dir(parent)
                shutil.rmtree(tmp, ignore_errors=True)  # now holds the old checkpoint
                return path
            old = parent / f".{path.name}{_OLD}{secrets.token_hex(6)}"
            os.rename(path, old)
            os.rename(tmp, path)
            _fsync_dir(parent)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
            _fsync_dir(parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(
            f"could not write checkpoint `{path}`: {exc.strerror or exc}; the previous "
            "checkpoint, if any, is unchanged."
        ) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
