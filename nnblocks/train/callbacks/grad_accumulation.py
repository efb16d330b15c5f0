"""`GradientAccumulation`: one optimizer step every ``n`` batches (a larger effective batch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nnblocks.errors import TrainingError
from nnblocks.train.callback import Callback
from nnblocks.train.events import CancelStep

if TYPE_CHECKING:
    from nnblocks.train.learner import Learner

__all__ = ["GradientAccumulation"]


class GradientAccumulation(Callback):
    """Accumulate gradients over ``n`` consecutive batches, then step.

    The loss is divided by the size of its window so the step sees the mean gradient; the
    last window of an epoch may be shorter and steps at the epoch's end. Windows are
    counted from the batch index, so a run resumed in the middle of a window (its pending
    gradients are in the checkpoint) steps at the same batches as the original.

    Args:
        n: batches per optimizer step.
    """

    order = 30

    def __init__(self, n: int):
        if not isinstance(n, int) or n < 1:
            raise TrainingError(
                f"GradientAccumulation needs a positive integer n. Received: n={n!r}"
            )
        self.n = n

    def _window(self, learn: Learner) -> int:
        start = (learn.iter // self.n) * self.n
        return min(self.n, learn.n_iter - start)

    def before_backward(self, learn: Learner) -> None:
        if self.n > 1:
            learn.loss_grad = learn.loss_grad / self._window(learn)

    def before_step(self, learn: Learner) -> None:
        last_of_window = (learn.iter + 1) % self.n == 0 or learn.iter + 1 == learn.n_iter
        if not last_of_window:
            raise CancelStep
