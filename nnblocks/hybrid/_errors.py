"""The errors of hybridize and export; both are NNBlocksErrors a user can cause."""

from __future__ import annotations

from nnblocks.errors import NNBlocksError

__all__ = ["EquivalenceError", "ExportError"]


class EquivalenceError(NNBlocksError, ValueError):
    """A compiled or exported model gives other outputs than the eager model.

    ``.max_diff`` is the largest absolute difference found and ``.where`` names the output
    (``output[0]``) and the index where it is.
    """

    def __init__(self, message: str, *, max_diff: float, where: str):
        self.max_diff = max_diff
        self.where = where
        super().__init__(message)


class ExportError(NNBlocksError, RuntimeError):
    """A model could not be compiled or exported, or an optional export package is missing."""
