"""The cache folder for generated datasets (``$NNBLOCKS_CACHE`` or ``~/.cache/nnblocks``)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from nnblocks.errors import CheckpointError
from nnblocks.io.atomic import atomic_write_text

__all__ = ["cache_dir", "cache_key", "read_json", "write_json"]

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """The cache folder, created if needed: ``$NNBLOCKS_CACHE``, else ``~/.cache/nnblocks``."""
    root = os.environ.get("NNBLOCKS_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "nnblocks"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_key(**options: Any) -> str:
    """A short stable hash of JSON-able options (names a cached file)."""
    text = json.dumps(options, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``, or None if it is missing or unreadable (then it is regenerated)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable cache file %s (%s); regenerating it", path, exc)
        return None


def write_json(path: Path, data: Any) -> None:
    """Write JSON through the one atomic write layer, so a reader never sees half a file;
    failures to write the cache are logged, not raised (the next run only regenerates)."""
    try:
        atomic_write_text(path, json.dumps(data, ensure_ascii=False))
    except CheckpointError as exc:
        log.warning("could not write cache file %s: %s", path, exc)
