"""`NanGuard`: stop training at the first non-finite loss, naming the epoch and the batch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from nnblocks.errors import TrainingError
from nnblocks.train.callback import Callback
from nnblocks.train.distributed import all_reduce_sum

if TYPE_CHECKING:
    from nnblocks.train.learner import Learner

__all__ = ["NanGuard"]


class NanGuard(Callback):
    """Check the recorded losses every ``every`` batches, at the end of each training phase
    and before every checkpoint; raise a ``TrainingError`` naming the first bad batch.

    Checking a window at a time reads the device once per ``every`` steps instead of every
    step; the window's losses stay recorded, so the first bad batch is still named exactly.
    Checkpoints call ``check`` first and refuse non-finite weights, so no checkpoint with
    NaN is ever written.

    Args:
        every: batches between checks.
    """

    order = 50

    def __init__(self, every: int = 16):
        self.every = every
        self._checked = 0

    def before_train(self, learn: Learner) -> None:
        self._checked = len(learn.epoch_losses)  # restored losses were checked before saving

    def after_batch(self, learn: Learner) -> None:
        if learn.training and len(learn.epoch_losses) - self._checked >= self.every:
            self.check(learn)

    def after_train(self, learn: Learner) -> None:
        self.check(learn)

    def check(self, learn: Learner) -> None:
        """Raise if a loss recorded since the last check is NaN or Inf (on any process)."""
        new = learn.epoch_losses[self._checked :]
        losses = (
            torch.stack([x.float() for x in new]) if new else torch.zeros(0, device=learn.device)
        )
        finite = torch.isfinite(losses)
        bad = (~finite).any()
        if learn.dist.enabled:
            # Every process must stop together, or the others would wait in DDP forever.
            bad = all_reduce_sum(bad.float()) > 0
        if not bool(bad):
            self._checked += len(new)
            return
        if bool(finite.all()):
            raise TrainingError(
                f"the training loss became non-finite on another process near epoch {learn.epoch}, "
                f"batch {learn.iter}; training stopped and no checkpoint is written from here."
            )
        first = int((~finite).nonzero()[0])
        batch = self._checked + first
        step = learn.train_step - len(new) + first
        raise TrainingError(
            f"the training loss is {float(losses[first])} at epoch {learn.epoch}, batch {batch} "
            f"(step {step}); training stopped and no checkpoint is written from here. Try a "
            "lower learning rate, clip_grad=1.0, or debug=True to name the module that "
            "produced it."
        )
