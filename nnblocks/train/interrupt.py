"""Stop cleanly on SIGINT (Ctrl-C) and SIGTERM (what cluster schedulers send before preemption).

While ``Learner.fit`` runs in the main thread, the first of these signals does not stop the
process where it stands: the current training step finishes, a full training checkpoint
is written (``SaveCheckpoint``'s ``last`` folder, else ``<learn.path>/checkpoints/last``),
and ``fit`` raises ``TrainingInterrupted``. A run resumed from that checkpoint continues
exactly where it stopped (the checkpoint records the position inside the epoch). A second
Ctrl-C while the step finishes stops at once, as Python does by default.

The command line turns ``TrainingInterrupted`` into one line that says how to resume and
the exit code shells use for a signal: 128 + its number (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnblocks.errors import TrainingError
from nnblocks.train.callback import Callback
from nnblocks.train.callbacks.checkpoint import SaveCheckpoint

if TYPE_CHECKING:
    from nnblocks.train.learner import Learner

__all__ = ["TrainingInterrupted", "StopOnSignal", "catch_signals", "SIGNALS"]

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(TrainingError):
    """Training stopped on a signal after a checkpoint was written.

    Attributes:
        signum: the signal's number; ``signal_name`` its name (``"SIGINT"``).
        checkpoint: the checkpoint folder written, or None (a Learner without ``path``).
        epoch, step: where training stopped (``step``: training batches done in this fit).
        exit_code: ``128 + signum``, what a shell reports for a process ended by it.
    """

    def __init__(self, signum: int, checkpoint: Path | None, *, epoch: int, step: int):
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        self.checkpoint = checkpoint
        self.epoch, self.step = epoch, step
        self.exit_code = 128 + signum
        where = f"checkpoint saved in {checkpoint}" if checkpoint else "no checkpoint (no path)"
        super().__init__(
            f"training interrupted by {self.signal_name} at epoch {epoch}, step {step}: {where}"
        )


class StopOnSignal(Callback):
    """After the step in which a signal arrived: save a checkpoint and stop training.

    ``catch_signals`` installs it for the duration of one ``fit``; ``signum`` is set by the
    signal handler (reading one attribute per batch is all it costs otherwise).
    """

    order = 95  # after the checkpoint callback (80) may have saved this very step

    def __init__(self) -> None:
        self.signum: int | None = None

    def after_batch(self, learn: Learner) -> None:
        if self.signum is not None and learn.training:
            self._stop(learn, epoch_end=False)

    def after_epoch(self, learn: Learner) -> None:
        if self.signum is not None:  # arrived during validation: the epoch is complete now
            self._stop(learn, epoch_end=True)

    def _stop(self, learn: Learner, *, epoch_end: bool) -> None:
        assert self.signum is not None
        savers: list[Any] = learn.cbs.find(SaveCheckpoint)
        if savers:
            target: Path | None = savers[0].last_path(learn)
        elif learn.path is not None:
            target = learn.path / "checkpoints" / "last"
        else:
            target = None
        if epoch_end and savers and savers[0].save_last:
            written = target  # saved a moment ago by the checkpoint callback
        else:
            written = learn.save_checkpoint(target) if target is not None else None
        raise TrainingInterrupted(
            self.signum,
            written or target,
            epoch=learn.epoch,
            step=learn.train_step,
        )


@contextlib.contextmanager
def catch_signals(learn: Learner) -> Iterator[StopOnSignal | None]:
    """Within this block, SIGINT and SIGTERM stop ``learn`` after its current step.

    Outside the main thread (where Python cannot install handlers) nothing changes.
    The previous handlers come back when the block ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    stopper = StopOnSignal()

    def handler(signum: int, frame: Any) -> None:
        if stopper.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        log.debug("received %s: stopping after this step", signal.Signals(signum).name)
        stopper.signum = signum

    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, handler)
    learn.cbs.add(stopper)
    try:
        yield stopper
    finally:
        learn.cbs.remove(stopper)
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
