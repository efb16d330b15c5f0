"""The fingerprint of a run: a hash of the whole resolved recipe and of the plugin code.

An ablation or search reuses a finished run only when the run's recorded fingerprint equals
the one asked for; otherwise `--set train.epochs=1` into an old folder would silently report
the earlier runs as new.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nnblocks.plugins import ENV_VAR

__all__ = ["plugin_hashes", "recipe_fingerprint"]


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def plugin_hashes(refs: Iterable[str] | None = None) -> dict[str, str]:
    """SHA-256 of each plugin's source file (default: the plugins this process imported
    through ``NNBLOCKS_PLUGINS``: ``--plugin`` and the recipe's ``plugins``)."""
    if refs is None:
        refs = [r for r in os.environ.get(ENV_VAR, "").split(os.pathsep) if r]
    out: dict[str, str] = {}
    for ref in refs:
        path = Path(ref)
        if not path.is_file():  # a module name: hash the file it is imported from
            spec = importlib.util.find_spec(ref) if not ref.endswith(".py") else None
            origin = getattr(spec, "origin", None)
            path = Path(origin) if origin else path
        out[ref] = _file_hash(path) if path.is_file() else "missing"
    return out


def recipe_fingerprint(recipe: Mapping[str, Any], plugins: Mapping[str, str] | None = None) -> str:
    """A hex SHA-256 of the resolved recipe (canonical JSON) and the plugins' file hashes."""
    hashes = plugin_hashes() if plugins is None else dict(plugins)
    # Plugin paths differ across machines; only the code they hold makes a run different.
    payload = {"recipe": recipe, "plugins": sorted(hashes.values())}
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
