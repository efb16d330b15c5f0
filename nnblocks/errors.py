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
    """Base of every error a user can cause."""


class SpecError(NNBlocksError, ValueError):
    """A spec (or recipe key) is malformed: unknown name, unknown or missing argument."""

    def __init__(self, message: str, *, path: str | None = None):
        self.path = path
        super().__init__(f"at `{path}`: {message}" if path else message)


class RegistryError(SpecError, KeyError):
    """A kind or part name is unknown, or a name is registered twice."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class ShapeError(NNBlocksError, ValueError):
    """A tensor at a part's boundary has the wrong rank, size, dtype or device."""


class CheckpointError(NNBlocksError, OSError):
    """A checkpoint or weights file is missing, corrupt, hostile or untrusted."""


class DataError(NNBlocksError, ValueError):
    """Data and its declared task, split or model disagree."""


class TrainingError(NNBlocksError, RuntimeError):
    """Training cannot go on (bad configuration, non-finite loss, failed callback)."""


class NumericsError(NNBlocksError, FloatingPointError):
    """A NaN or Inf appeared; `.module_path` names the first module and `.phase` where."""

    def __init__(self, message: str, *, module_path: str = "", phase: str = ""):
        self.module_path = module_path
        self.phase = phase
        super().__init__(message)
