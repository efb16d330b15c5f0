"""`EarlyStopping`: stop when a monitored value has not improved for ``patience`` epochs."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from nnblocks.errors import TrainingError
from nnblocks.train.callback import Callback

if TYPE_CHECKING:
    from nnblocks.train.learner import Learner

__all__ = ["EarlyStopping", "Monitor"]


class Monitor:
    """Tracks the best value of one history column (``"valid_loss"``, ``"accuracy"``)."""

    def __init__(self, monitor: str = "valid_loss", mode: str = "auto", min_delta: float = 0.0):
        if mode == "auto":
            mode = (
                "min"
                if "loss" in monitor or monitor in ("mse", "mae", "rmse", "perplexity")
                else "max"
            )
        if mode not in ("min", "max"):
            raise TrainingError(f"mode must be 'min', 'max' or 'auto'. Received: mode={mode!r}")
        self.monitor, self.mode, self.min_delta = monitor, mode, min_delta
        self.best: float | None = None

    def value(self, learn: Learner) -> float:
        row = learn.history[-1] if learn.history else {}
        if self.monitor not in row:
            raise TrainingError(
                f"cannot monitor `{self.monitor}`: the epoch's history has {sorted(row)}. "
                "Pass monitor= one of them (validation columns need a valid split)."
            )
        return float(row[self.monitor])

    def improved(self, value: float) -> bool:
        """Whether ``value`` beats the best so far (and remember it when it does)."""
        if math.isnan(value):
            return False
        better = self.best is None or (
            value < self.best - self.min_delta
            if self.mode == "min"
            else value > self.best + self.min_delta
        )
        if better:
            self.best = value
        return better

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")


class EarlyStopping(Callback):
    """Stop training after ``patience`` epochs without improvement of ``monitor``.

    Args:
        monitor: a history column, e.g. ``"valid_loss"`` or ``"accuracy"``.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (min for losses and errors).
        patience: epochs without improvement before stopping.
        min_delta: the smallest change that counts as an improvement.
    """

    order = 70

    def __init__(
        self,
        monitor: str = "valid_loss",
        mode: str = "auto",
        patience: int = 3,
        min_delta: float = 0.0,
    ):
        self.tracker = Monitor(monitor, mode, min_delta)
        self.patience = patience
        self.wait = 0

    def before_fit(self, learn: Learner) -> None:
        self.tracker.best, self.wait = None, 0

    def after_epoch(self, learn: Learner) -> None:
        if self.tracker.improved(self.tracker.value(learn)):
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            learn.stop_training = True

    def state_dict(self) -> dict[str, Any]:
        return {**self.tracker.state_dict(), "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tracker.load_state_dict(state)
        self.wait = int(state.get("wait", 0))
