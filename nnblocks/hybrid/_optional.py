"""Optional packages of the ``export`` extra, imported only when an export needs them."""

from __future__ import annotations

import importlib
from types import ModuleType

from nnblocks.hybrid._errors import ExportError

__all__ = ["EXTRA", "require"]

EXTRA = "pip install nnblocks[export]"


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise an ExportError naming the extra to install.

    Raises:
        ExportError: the package is not installed (or fails to import).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ExportError(
            f"{purpose} needs the optional package `{module}`, which is not installed "
            f"({exc}). Install the export extra: `{EXTRA}`."
        ) from exc
