"""Import user code that registers parts: a Python file or an importable module.

Installed packages register through the ``nnblocks.parts`` entry point. For a part in the
user's own file there are three ways, all ending here: ``nnblocks --plugin my_attention.py``,
the environment variable ``NNBLOCKS_PLUGINS`` (paths or modules separated by ``os.pathsep``;
child processes of an ablation inherit it) and a recipe's ``plugins:`` list.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from nnblocks.errors import SpecError

__all__ = [
    "ENV_VAR",
    "distribution_of",
    "export_to_env",
    "import_plugin",
    "import_plugins",
    "plugin_file_of",
    "plugins_from_env",
]

ENV_VAR = "NNBLOCKS_PLUGINS"
_imported: dict[str, ModuleType] = {}


def import_plugin(ref: str, *, base: Path | None = None) -> ModuleType:
    """Import ``ref``: a ``.py`` file (relative to ``base``, then the working folder) or a module.

    Importing the same file twice returns the first module, so its parts register once.

    Raises:
        SpecError: the file does not exist, or importing it raised (the error names it).
    """
    if ref.endswith(".py") or os.sep in ref or "/" in ref:
        candidates = [Path(ref)] if Path(ref).is_absolute() else []
        if base is not None:
            candidates.append(base / ref)
        candidates.append(Path.cwd() / ref)
        path = next((c.resolve() for c in candidates if c.is_file()), None)
        if path is None:
            tried = ", ".join(str(c) for c in candidates)
            raise SpecError(f"plugin file not found (tried {tried})", path=ref)
        key = str(path)
        if key in _imported:
            return _imported[key]
        name = f"nnblocks_user_{path.stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise SpecError("cannot import this file as Python", path=str(path))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look modules up here
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise SpecError(
                f"importing the plugin failed: {type(exc).__name__}: {exc}", path=str(path)
            ) from exc
        _imported[key] = module
        return module
    try:
        return importlib.import_module(ref)
    except ImportError as exc:
        raise SpecError(f"cannot import plugin module `{ref}`: {exc}", path=ref) from exc


def import_plugins(refs: Iterable[str], *, base: Path | None = None) -> list[ModuleType]:
    return [import_plugin(r, base=base) for r in refs]


def plugins_from_env() -> list[ModuleType]:
    """Import every plugin named in ``NNBLOCKS_PLUGINS``."""
    value = os.environ.get(ENV_VAR, "")
    return import_plugins([r for r in value.split(os.pathsep) if r.strip()])


def export_to_env(refs: Iterable[str]) -> None:
    """Add absolute paths of ``refs`` to ``NNBLOCKS_PLUGINS`` so child processes import them."""
    current = [r for r in os.environ.get(ENV_VAR, "").split(os.pathsep) if r]
    for ref in refs:
        resolved = str(Path(ref).resolve()) if ref.endswith(".py") and Path(ref).exists() else ref
        if resolved not in current:
            current.append(resolved)
    os.environ[ENV_VAR] = os.pathsep.join(current)


def plugin_file_of(module_name: str) -> Path | None:
    """The plugin file imported as the module ``module_name`` (None for other modules).

    A part registered by a plugin file reports that module as its source; a saved model
    records the file, so loading it elsewhere can say which file to pass.
    """
    for key, module in _imported.items():
        if module.__name__ == module_name:
            return Path(key)
    return None


def distribution_of(top_level: str) -> str | None:
    """The installed distribution (what ``pip install`` takes) providing ``top_level``.

    ``importlib.metadata.packages_distributions`` maps import names to distribution names,
    which differ often (``import sklearn`` comes from ``scikit-learn``).
    """
    found = _distributions().get(top_level)
    return found[0] if found else None


@functools.cache
def _distributions() -> dict[str, list[str]]:
    # Reading every installed distribution's metadata takes about a second: once a process.
    try:
        return dict(importlib.metadata.packages_distributions())
    except Exception:  # a broken environment's metadata must not stop a save
        return {}
