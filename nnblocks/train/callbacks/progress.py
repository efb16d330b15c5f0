"""`Progress`: a live rich progress bar with the loss, or plain lines where there is no terminal.

The bar is refreshed from the training loop itself (no refresh thread competing for the
interpreter) and at most every ``refresh`` seconds: the live loss is the only value read
back from the device, so the bar costs a clock reading per batch and nothing else.
"""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING, Any

from nnblocks.train.callback import Callback

if TYPE_CHECKING:
    from nnblocks.train.learner import Learner

__all__ = ["Progress", "format_row"]


def _plain_terminal(console: Any) -> bool:
    ci = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
    return ci or not console.is_terminal


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return (
            f"{value:.3e}"
            if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4)
            else f"{value:.4f}"
        )
    return str(value)


def format_row(row: dict[str, Any], keys: list[str]) -> str:
    """One epoch's row as aligned text."""
    return "  ".join(f"{_fmt(row.get(k, '')):>10}" for k in keys)


class Progress(Callback):
    """Show training progress.

    In a terminal: a rich bar per epoch with the smoothed loss, and one line per finished
    epoch (epoch, losses, metrics, time). Without a terminal, or with ``CI=true``: plain
    lines, one per epoch plus a status line every ``plain_every`` seconds.

    Args:
        refresh: seconds between live updates of the bar.
        plain_every: seconds between status lines in plain mode.
        console: a ``rich.console.Console`` (default: a new one on stdout).
    """

    order = 90

    def __init__(self, refresh: float = 0.2, plain_every: float = 30.0, console: Any = None):
        self.refresh = refresh
        self.plain_every = plain_every
        self.console = console
        self._bar: Any = None

    def before_fit(self, learn: Learner) -> None:
        from rich.console import Console

        self.console = self.console or Console()
        self.plain = _plain_terminal(self.console)
        self._keys: list[str] | None = None
        self._t_fit = time.perf_counter()
        if not self.plain:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"),
                console=self.console,
                auto_refresh=False,
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task("", total=1, status="")

    def before_epoch(self, learn: Learner) -> None:
        self._t_epoch = time.perf_counter()
        self._next = self._t_epoch + (self.refresh if not self.plain else self.plain_every)

    def before_train(self, learn: Learner) -> None:
        self._train_total = learn.n_iter
        if self._bar is not None:
            self._bar.reset(
                self._task,
                total=learn.n_iter,
                completed=learn.start_iter if learn.epoch == learn.start_epoch else 0,
                description=f"epoch {learn.epoch + 1}/{learn.n_epochs}",
                status="",
            )
            self._bar.refresh()

    def after_batch(self, learn: Learner) -> None:
        now = time.perf_counter()
        if now < self._next or not learn.training:
            return
        loss = learn.recent_loss()
        if self._bar is not None:
            self._next = now + self.refresh
            self._bar.update(self._task, completed=learn.iter + 1, status=f"loss {loss:.4f}")
            self._bar.refresh()
        else:
            self._next = now + self.plain_every
            self.console.print(
                f"epoch {learn.epoch + 1}/{learn.n_epochs}  batch {learn.iter + 1}/{learn.n_iter}  "
                f"loss {loss:.4f}",
                highlight=False,
                soft_wrap=True,
            )

    def before_validate(self, learn: Learner) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self._train_total, status="validating")
            self._bar.refresh()

    def after_epoch(self, learn: Learner) -> None:
        if not learn.history:
            return
        row = dict(learn.history[-1])
        row["epoch"] = row.get("epoch", learn.epoch) + 1
        row["time"] = f"{time.perf_counter() - self._t_epoch:.1f}s"
        if self._keys is None:
            self._keys = [k for k in row if k != "lr"]
            self._print("  ".join(f"{k:>10}" for k in self._keys))
        self._print(format_row(row, self._keys))

    def _print(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, highlight=False, soft_wrap=True)
        else:
            self.console.print(text, highlight=False, soft_wrap=True)

    def after_fit(self, learn: Learner) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
