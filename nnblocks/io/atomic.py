"""Atomic file writes: a reader sees the old file or the new one, never half of either.

The recipe (the one databases use; see also LWN "Ensuring data reaches disk", 2011):
write a temporary file in the *same* folder (a rename is only atomic within one file
system), flush and fsync it, ``os.replace`` it over the target, then fsync the folder so
the rename itself survives a power cut. On any failure the temporary file is removed and
the old target is left byte-identical.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from nnblocks.errors import CheckpointError

__all__ = [
    "Staging",
    "atomic_files",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "fsync_dir",
]

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
