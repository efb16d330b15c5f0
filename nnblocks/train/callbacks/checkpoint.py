"""`SaveCheckpoint`: keep the last and the best training checkpoints, every epoch or N steps."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnblocks.errors import TrainingError
from nnblocks.train.callback import Callback
from nnblocks.train.callbacks.early_stopping import Monitor

if TYPE_CHECKING:
    from nnblocks.train.learner import Learner

__all__ = ["SaveCheckpoint"]

log = logging.getLogger(__name__)


class SaveCheckpoint(Callback):
    """Save ``<folder>/last`` (and ``<folder>/best`` when ``monitor`` improves).

    Each save is a full training state (``nnblocks.train.checkpoint``), written atomically:
    a crash at any moment leaves the previous checkpoint whole. Nothing is saved once the
    loss or the weights are non-finite. ``learn.fit(n, resume="auto")`` continues from
    ``last`` when it exists.

    Args:
        folder: where checkpoints go; relative paths are inside the Learner's ``path``.
        monitor: the history column deciding "best" (default: ``valid_loss`` when there is a
            validation split, else ``train_loss``).
        mode: ``"min"``, ``"max"`` or ``"auto"``.
        save_last: save ``last`` after every epoch.
        save_best: save ``best`` when ``monitor`` improves.
        every_n_steps: also save ``last`` every this many training batches (mid-epoch).
        every_n_minutes: also save ``last`` when this many minutes have passed since the
            last save (mid-epoch; checked after each training batch), so an interrupted
            long epoch resumes near where it stopped.

    Raises:
        TrainingError: ``every_n_steps`` or ``every_n_minutes`` not positive.
    """

    order = 80

    def __init__(
        self,
        folder: str | os.PathLike[str] = "checkpoints",
        monitor: str | None = None,
        mode: str = "auto",
        save_last: bool = True,
        save_best: bool = True,
        every_n_steps: int | None = None,
        every_n_minutes: float | None = None,
    ):
        for key, value in (("every_n_steps", every_n_steps), ("every_n_minutes", every_n_minutes)):
            if value is not None and (isinstance(value, bool) or not value > 0):
                raise TrainingError(
                    f"Received an invalid value for `{key}`: expected a positive number or "
                    f"None. Received: {key}={value!r}"
                )
        self.folder = Path(folder)
        self.monitor, self.mode = monitor, mode
        self.save_last, self.save_best = save_last, save_best
        self.every_n_steps = every_n_steps
        self.every_n_minutes = every_n_minutes
        self._saved_at = time.monotonic()
        self.tracker: Monitor | None = None
        self._best_state: dict[str, Any] = {}

    def root(self, learn: Learner) -> Path:
        if self.folder.is_absolute() or learn.path is None:
            return self.folder
        return learn.path / self.folder

    def last_path(self, learn: Learner) -> Path:
        return self.root(learn) / "last"

    def best_path(self, learn: Learner) -> Path:
        return self.root(learn) / "best"

    def before_fit(self, learn: Learner) -> None:
        monitor = self.monitor or (
            "valid_loss" if learn.loaders.get("valid") is not None else "train_loss"
        )
        self.tracker = Monitor(monitor, self.mode)
        if self._best_state:
            self.tracker.load_state_dict(self._best_state)
        self._saved_at = time.monotonic()

    def after_batch(self, learn: Learner) -> None:
        if not learn.training:
            return
        due = bool(self.every_n_steps) and learn.train_step % self.every_n_steps == 0  # type: ignore[operator]
        if self.every_n_minutes and time.monotonic() - self._saved_at >= 60 * self.every_n_minutes:
            due = True
        if due:
            learn.save_checkpoint(self.last_path(learn))
            self._saved_at = time.monotonic()

    def after_epoch(self, learn: Learner) -> None:
        assert self.tracker is not None
        improved = self.save_best and self.tracker.improved(self.tracker.value(learn))
        if self.save_last:
            learn.save_checkpoint(self.last_path(learn))
            self._saved_at = time.monotonic()
        if improved:
            learn.save_checkpoint(self.best_path(learn))
            log.info(
                "new best %s = %.5g: saved %s",
                self.tracker.monitor,
                self.tracker.best,
                self.best_path(learn),
            )

    def state_dict(self) -> dict[str, Any]:
        return self.tracker.state_dict() if self.tracker is not None else dict(self._best_state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._best_state = dict(state)
        if self.tracker is not None:
            self.tracker.load_state_dict(state)
