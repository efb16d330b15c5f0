"""Every error a user can cause derives from `NNBlocksError`.

Messages follow one template: the place (spec path, slot, file, part), what was expected,
and what was received, e.g.

    Received an invalid value for `heads` at `model.decoder.self_attention`: expected a
    positive integer that divides dim=256. Received: heads=3.
"""

from __future__ import annotations

__all__ = [
    "NNBlocksError",
    "SpecError",
    "RegistryError",
    "ShapeError",
    "CheckpointError",
    "DataError",
    "NumericsError",
    "TrainingError",
]


class NNBlocksError(Exception):
    """Base of every error a user can cause.

    Its message ends with the docs page that explains the contract it enforces
    (``docs``, a page of the documentation site, relative to ``docs/``).
    """

    docs = "reference/errors.md"

    def __str__(self) -> str:
        return _with_docs(super().__str__(), self.docs)


class SpecError(NNBlocksError, ValueError):
    """A spec (or recipe key) is malformed: unknown name, unknown or missing argument."""

    docs = "reference/errors.md#specerror"

    def __init__(self, message: str, *, path: str | None = None):
        self.path = path
        super().__init__(f"at `{path}`: {message}" if path else message)


class RegistryError(SpecError, KeyError):
    """A kind or part name is unknown, or a name is registered twice."""

    docs = "reference/errors.md#registryerror"

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return _with_docs(str(self.args[0]) if self.args else "", self.docs)


class ShapeError(NNBlocksError, ValueError):
    """A tensor at a part's boundary has the wrong rank, size, dtype or device."""

    docs = "reference/errors.md#shapeerror"


class CheckpointError(NNBlocksError, OSError):
    """A checkpoint or weights file is missing, corrupt, hostile or untrusted."""

    docs = "reference/errors.md#checkpointerror"


class DataError(NNBlocksError, ValueError):
    """Data and its declared task, split or model disagree."""

    docs = "reference/errors.md#dataerror"


class TrainingError(NNBlocksError, RuntimeError):
    """Training cannot go on (bad configuration, non-finite loss, failed callback)."""

    docs = "reference/errors.md#trainingerror"


class NumericsError(NNBlocksError, FloatingPointError):
    """A NaN or Inf appeared; `.module_path` names the first module and `.phase` where."""

    docs = "reference/errors.md#numericserror"

    def __init__(self, message: str, *, module_path: str = "", phase: str = ""):
        self.module_path = module_path
        self.phase = phase
        super().__init__(message)


def _with_docs(text: str, page: str) -> str:
    """``text`` ending with the docs page, once (a wrapped error keeps a single pointer)."""
    if not page or "(docs: " in text:
        return text
    return f"{text} (docs: {page})"
