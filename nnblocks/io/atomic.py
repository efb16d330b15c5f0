"""The one atomic write layer: a reader sees the old file (or folder) or the new one,
never half of either.

Files (``atomic_files``, ``atomic_path``, ``atomic_write_bytes``): the recipe databases use
(see also LWN "Ensuring data reaches disk", 2011): write a temporary file in the *same*
folder (a rename is only atomic within one file system), flush and fsync it, ``os.replace``
it over the target, then fsync the folder so the rename itself survives a power cut. On any
failure the temporary file is removed and the old target is left byte-identical.

Folders (``atomic_folder``): the new folder is written under a temporary name next to its
final place, every file fsynced, then swapped in with one ``renameat2(RENAME_EXCHANGE)``
(Linux >= 3.15), so a process killed at any instant leaves either the complete old folder
or the complete new one at the final path. Where the kernel or file system cannot
exchange, two renames are used and ``recover_folder`` puts the old folder back if a crash
fell between them.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nnblocks.errors import CheckpointError

_TEMP_SUFFIX = ".tmp"


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (no-op where folders cannot be opened)."""
    if os.name == "nt":  # Windows cannot open a folder to fsync it; NTFS journals renames
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems (and FUSE mounts) do not fsync folders
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _write_error(target: Path, exc: OSError) -> CheckpointError:
    reason = exc.strerror or str(exc)
    return CheckpointError(
        f"could not write `{target}`: {reason}. Expected a writable folder "
        f"`{target.parent}`; the previous `{target.name}`, if any, is unchanged."
    )


class Staging:
    """Temporary files for a group of targets in one folder, replaced together on commit.

    Use through :func:`atomic_files`. ``path(name)`` reserves a fresh temporary file next
    to ``folder/name`` (created empty, permissions from the umask) and returns its path;
    write it by any means. Targets are replaced in the order they were first asked for,
    so a manifest asked for last lands last.
    """

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)
        self._temps: dict[str, Path] = {}

    def path(self, name: str) -> Path:
        """The temporary path standing in for ``folder/name``."""
        if name in self._temps:
            return self._temps[name]
        target = self.folder / name
        for _ in range(16):
            temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}{_TEMP_SUFFIX}")
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue
            except OSError as exc:
                raise _write_error(target, exc) from exc
            os.close(fd)
            self._temps[name] = temp
            return temp
        raise CheckpointError(f"could not create a temporary file next to `{target}`.")

    def commit(self) -> None:
        """fsync every temporary file, replace the targets in order, fsync the folder."""
        for name, temp in self._temps.items():
            try:
                _fsync_path(temp)
            except OSError as exc:
                raise _write_error(self.folder / name, exc) from exc
        for name, temp in list(self._temps.items()):
            try:
                os.replace(temp, self.folder / name)
            except OSError as exc:
                raise _write_error(self.folder / name, exc) from exc
            del self._temps[name]
        try:
            fsync_dir(self.folder)
        except OSError as exc:
            raise _write_error(self.folder, exc) from exc

    def discard(self) -> None:
        """Remove every temporary file not yet committed (never raises)."""
        for temp in self._temps.values():
            with contextlib.suppress(OSError):
                os.unlink(temp)
        self._temps.clear()


@contextlib.contextmanager
def atomic_files(folder: str | os.PathLike[str]) -> Iterator[Staging]:
    """Write several files in ``folder`` atomically, each one replaced only when all are written.

    Args:
        folder: an existing folder.

    Yields:
        A :class:`Staging`; write each target to ``staging.path(name)``.

    Raises:
        CheckpointError: a temporary file could not be created, synced or renamed (the
            message names the file). Exceptions from the body propagate unchanged; in every
            failure the temporary files are removed and the old targets stay as they were
            (if a rename itself fails, the targets renamed before it are already new).

    Example:
        >>> with atomic_files(folder) as staging:          # doctest: +SKIP
        ...     staging.path("weights.bin").write_bytes(b"...")
        ...     staging.path("manifest.json").write_text("{}")
    """
    staging = Staging(folder)
    try:
        yield staging
        staging.commit()
    except BaseException:  # also on KeyboardInterrupt: no temporary file is left behind
        staging.discard()
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it atomically replaces ``path``.

    Raises:
        CheckpointError: as :func:`atomic_files`.

    Example:
        >>> with atomic_path("model.safetensors") as temp:  # doctest: +SKIP
        ...     safetensors.torch.save_file(tensors, temp)
    """
    target = Path(path)
    with atomic_files(target.parent) as staging:
        yield staging.path(target.name)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, replace, fsync folder).

    Raises:
        CheckpointError: the folder is missing or not writable, or the disk is full; the
            previous file is left unchanged.
    """
    target = Path(path)
    with atomic_path(target) as temp:
        try:
            with open(temp, "wb") as f:
                f.write(data)
                f.flush()
        except OSError as exc:
            raise _write_error(target, exc) from exc


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically; see :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode(encoding))


# -- whole folders ------------------------------------------------------------------------

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
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # the file system cannot
        return False
    raise OSError(err, os.strerror(err), str(b))


def _siblings(path: Path, marker: str) -> list[Path]:
    prefix = f".{path.name}{marker}"
    try:
        return sorted(p for p in path.parent.iterdir() if p.name.startswith(prefix))
    except OSError:
        return []


def recover_folder(path: str | os.PathLike[str]) -> None:
    """Undo a crash between the two renames of the fallback swap; drop stale temporaries."""
    path = Path(path)
    olds = _siblings(path, _OLD)
    if not path.exists() and olds:
        with contextlib.suppress(OSError):
            os.rename(olds[-1], path)
            olds = olds[:-1]
    for stale in olds + _siblings(path, _TMP):
        shutil.rmtree(stale, ignore_errors=True)


def _fsync_tree(folder: Path) -> None:
    for entry in folder.iterdir():
        if entry.is_file() and not entry.is_symlink():
            _fsync_path(entry)
    fsync_dir(folder)


def _swap_in(tmp: Path, path: Path) -> None:
    parent = path.parent
    if path.exists():
        if _exchange(tmp, path):
            fsync_dir(parent)
            shutil.rmtree(tmp, ignore_errors=True)  # now holds the old folder
            return
        old = parent / f".{path.name}{_OLD}{secrets.token_hex(6)}"
        os.rename(path, old)
        os.rename(tmp, path)
        fsync_dir(parent)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, path)
        fsync_dir(parent)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Write a whole folder atomically: it replaces ``path`` only when complete.

    Yields an empty temporary folder next to ``path``; write every file into it by any
    means (they are fsynced before the swap, so plain writes suffice). When the body
    returns, the folder replaces ``path`` as a whole; if it raises, the temporary folder is
    removed and ``path`` is left exactly as it was.

    Raises:
        CheckpointError: ``path`` is a file, or the folder cannot be created, synced or
            swapped in (naming it); the previous folder, if any, is unchanged. Exceptions
            from the body propagate unchanged.

    Example:
        >>> with atomic_folder("runs/a/checkpoints/last") as tmp:   # doctest: +SKIP
        ...     (tmp / "training.json").write_text("{}")
    """
    path = Path(path)
    parent = path.parent
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"cannot write the folder `{path}`: it is a file; expected a folder.")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(
            f"could not create the folder `{parent}` for `{path.name}`: {exc.strerror or exc}."
        ) from exc
    recover_folder(path)
    tmp = parent / f".{path.name}{_TMP}{secrets.token_hex(6)}"
    try:
        os.mkdir(tmp)
    except OSError as exc:
        raise CheckpointError(
            f"could not write `{path}`: {exc.strerror or exc}. Expected a writable folder "
            f"`{parent}`; the previous `{path.name}`, if any, is unchanged."
        ) from exc
    try:
        yield tmp
        _fsync_tree(tmp)
        _swap_in(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(
            f"could not write `{path}`: {exc.strerror or exc}; the previous `{path.name}`, "
            "if any, is unchanged."
        ) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
