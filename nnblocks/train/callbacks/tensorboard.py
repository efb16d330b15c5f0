"""`TensorBoardLogger`: losses, metrics and learning rate as TensorBoard scalars (optional extra)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnblocks.errors import TrainingError
from nnblocks.train.callback import Callback

if TYPE_CHECKING:
    from nnblocks.train.learner import Learner

__all__ = ["TensorBoardLogger"]


class TensorBoardLogger(Callback):
    """Log to TensorBoard (rank 0 only); needs the ``tensorboard`` package (``nnblocks[logging]``).

    Args:
        log_dir: the run folder; relative paths are inside the Learner's ``path``; default
            ``"tensorboard"``.
        every: training steps between logged losses (each one reads the device once).

    Raises:
        TrainingError: at ``before_fit`` when tensorboard is not installed.
    """

    order = 60

    def __init__(self, log_dir: str | os.PathLike[str] = "tensorboard", every: int = 50):
        self.log_dir = Path(log_dir)
        self.every = every
        self.writer: Any = None

    def before_fit(self, learn: Learner) -> None:
        if learn.dist.rank != 0:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise TrainingError(
                "TensorBoardLogger needs the `tensorboard` package: pip install 'nnblocks[logging]'."
            ) from exc
        folder = (
            self.log_dir
            if self.log_dir.is_absolute() or learn.path is None
            else learn.path / self.log_dir
        )
        self.writer = SummaryWriter(log_dir=str(folder))

    def after_batch(self, learn: Learner) -> None:
        if self.writer is not None and learn.training and learn.train_step % self.every == 0:
            self.writer.add_scalar(
                "train/loss_step", learn.recent_loss(self.every), learn.train_step
            )
            self.writer.add_scalar("train/lr", learn.opt.param_groups[-1]["lr"], learn.train_step)

    def after_epoch(self, learn: Learner) -> None:
        if self.writer is None or not learn.history:
            return
        for key, value in learn.history[-1].items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(f"epoch/{key}", value, learn.epoch + 1)
        self.writer.flush()

    def after_fit(self, learn: Learner) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
