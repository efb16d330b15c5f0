"""Whether the current call is being recorded into a graph (torch.compile, torch.export or
``torch.jit.trace``): code that takes a shortcut in eager mode asks this first, so a graph
records what ``forward`` does."""

from __future__ import annotations

import torch

__all__ = ["tracing"]

# Looked up once: this runs in every decoding step.
_is_compiling = getattr(torch.compiler, "is_compiling", lambda: False)
_is_exporting = getattr(torch.compiler, "is_exporting", lambda: False)  # older torch lacks it


def tracing() -> bool:
    return bool(_is_compiling() or _is_exporting() or torch.jit.is_tracing())
