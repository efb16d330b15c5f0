"""`LossCurves`: draw the training and validation loss curves as a PNG after each fit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from nnblocks.train.callback import Callback

if TYPE_CHECKING:
    from nnblocks.train.learner import Learner

__all__ = ["LossCurves"]


class LossCurves(Callback):
    """Write ``filename`` (in the Learner's ``path``) after a fit that succeeded.

    The Learner adds it when it has a ``path``, on rank 0. Reads ``learn.loss_log`` (the
    per-step losses of finished epochs) and ``learn.history``.

    Args:
        filename: relative paths are inside the Learner's ``path`` (or the working folder).
    """

    order = 85

    def __init__(self, filename: str | os.PathLike[str] = "loss_curves.png"):
        self.filename = Path(filename)
        self.written: Path | None = None

    def after_fit(self, learn: Learner) -> None:
        if learn.error is not None or not learn.loss_log:
            return
        from nnblocks.train.plots import plot_loss_curves

        folder = learn.path if learn.path is not None and not self.filename.is_absolute() else None
        self.written = plot_loss_curves(learn, folder / self.filename if folder else self.filename)
