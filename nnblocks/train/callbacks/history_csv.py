"""`CSVLogger`: the per-epoch history as a CSV file, rewritten atomically after each epoch."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

from nnblocks.train.callback import Callback

if TYPE_CHECKING:
    from nnblocks.train.learner import Learner

__all__ = ["CSVLogger"]


class CSVLogger(Callback):
    """Write ``learn.history`` to ``filename`` after every epoch (rank 0 only).

    The whole file is replaced atomically, so it is never half-written, and a resumed run
    (whose history comes back from the checkpoint) writes the complete history again.

    Args:
        filename: relative paths are inside the Learner's ``path`` (or the working folder).
    """

    order = 60

    def __init__(self, filename: str | os.PathLike[str] = "history.csv"):
        self.filename = Path(filename)

    def path(self, learn: Learner) -> Path:
        if self.filename.is_absolute() or learn.path is None:
            return self.filename
        return learn.path / self.filename

    def after_epoch(self, learn: Learner) -> None:
        if learn.dist.rank != 0 or not learn.history:
            return
        from nnblocks.io.atomic import atomic_write_text

        keys: list[str] = []
        for row in learn.history:
            keys.extend(k for k in row if k not in keys)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(learn.history)
        target = self.path(learn)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, buf.getvalue())
