"""Where a dataset's files are: relative to the recipe that names them, and inside its folder.

A recipe is shared with its data (``recipe.yaml`` beside ``data/train.csv``), so a path in
its ``data`` section means "relative to the recipe file", not to wherever the command runs.
The recipe runner says where the recipe lies with ``data_root(folder)`` around the data
build; every file source resolves its paths through ``resolve_path``. Inside a
``data_root``, a path that leads out of the recipe's folder tree (``../../etc/passwd``, an
absolute path, a symlink pointing out) is refused unless the dataset's ``allow_outside``
option says so: a recipe from someone else should not read files it was not shipped with.

Outside any ``data_root`` (plain Python calls), paths are relative to the working folder and
nothing is refused: the caller chose the path.

A context variable, not an option of every source: the recipe's folder is a fact about where
the recipe lies, not a setting a recipe could override, and it stays out of saved specs.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from pathlib import Path

from nnblocks.errors import DataError

__all__ = ["data_root", "current_root", "resolve_path"]

_ROOT: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "nnblocks_data_root", default=None
)


@contextlib.contextmanager
def data_root(folder: str | os.PathLike[str] | None) -> Iterator[Path | None]:
    """Resolve dataset paths against ``folder`` (a recipe's folder) inside this block.

    Args:
        folder: the folder relative paths start from and that paths must stay inside;
            None leaves the current setting unchanged.

    Example:
        >>> with data_root("experiments/"):  # doctest: +SKIP
        ...     bundle = nnblocks.build({"name": "csv", "path": "wine.csv", "target": "y"}, "dataset")
    """
    if folder is None:
        yield _ROOT.get()
        return
    token = _ROOT.set(Path(folder).resolve())
    try:
        yield _ROOT.get()
    finally:
        _ROOT.reset(token)


def current_root() -> Path | None:
    """The folder set by the innermost ``data_root``, or None."""
    return _ROOT.get()


def resolve_path(
    path: str | os.PathLike[str],
    *,
    key: str,
    expect: str = "file",
    allow_outside: bool = False,
) -> Path:
    """A dataset path made absolute, checked to exist and (in a recipe) to stay in its folder.

    Args:
        path: the path as the user wrote it.
        key: the option that holds it, for messages (``data.path``).
        expect: ``"file"``, ``"dir"`` or ``"any"`` (file or folder).
        allow_outside: accept a path outside the recipe's folder tree.

    Returns:
        the resolved path (symlinks followed).

    Raises:
        DataError: a missing file or folder, the wrong one of the two, or a path outside
            the recipe's folder (naming the key, the path and the folder).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise DataError(
            f"Received an invalid value for `{key}`: expected a file path. Received: {path!r}"
        )
    root = _ROOT.get()
    given = Path(path).expanduser()
    full = (root / given if root is not None and not given.is_absolute() else given).resolve()
    if root is not None and not allow_outside and not full.is_relative_to(root):
        raise DataError(
            f"`{key}`: the path `{path}` leads outside the recipe's folder `{root}` (to `{full}`). "
            "Move the data beside the recipe, or set `allow_outside: true` in the data section "
            "if you trust this recipe."
        )
    if not full.exists():
        where = f" (relative to the recipe's folder `{root}`)" if root is not None else ""
        raise DataError(f"`{key}`: `{path}` not found{where}.")
    if expect == "file" and not full.is_file():
        raise DataError(f"`{key}`: expected a file, but `{full}` is a folder.")
    if expect == "dir" and not full.is_dir():
        raise DataError(f"`{key}`: expected a folder, but `{full}` is a file.")
    return full
