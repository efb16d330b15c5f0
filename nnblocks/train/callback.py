"""`Callback`: a class with one do-nothing method per event, and the table that fires them.

A callback overrides the events it needs (see ``nnblocks.train.events``) and receives the
Learner, whose state it may read and change::

    class PrintLoss(Callback):
        order = 50  # after the built-ins that change the loss

        def after_batch(self, learn):
            if learn.train_step % 100 == 0:
                logging.info("step %d: loss %.4f", learn.train_step, float(learn.loss))

Only the methods a callback overrides are ever called: the Learner builds, per event, the
list of callbacks that override it, so an empty hook costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from nnblocks.errors import NNBlocksError, TrainingError
from nnblocks.train.events import CANCELS, EVENTS

if TYPE_CHECKING:
    from nnblocks.train.learner import Learner

__all__ = ["Callback", "CallbackTable"]


class Callback:
    """Base class: every event is a method that does nothing.

    Attributes:
        order: callbacks run in increasing ``order`` (ties: the order they were added).
            Built-ins: schedules 10, mixed precision 20, gradient accumulation 30,
            gradient clipping 40, NaN guard 50, metrics/history 60, early stopping 70,
            checkpoints 80, progress 90.
        name: the name used in messages and in a checkpoint's state (class name by default).

    A callback that keeps state across epochs returns it from ``state_dict()`` (plain JSON
    data) and takes it back in ``load_state_dict()`` so ``fit(resume=...)`` is exact.
    """

    order: int = 50

    @property
    def name(self) -> str:
        return type(self).__name__

    def state_dict(self) -> dict[str, Any]:
        """Plain data saved in a training checkpoint (JSON)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    def __repr__(self) -> str:
        return f"{self.name}(order={self.order})"

    # fmt: off
    def before_fit(self, learn: Learner) -> None: ...
    def after_fit(self, learn: Learner) -> None: ...
    def after_cancel_fit(self, learn: Learner) -> None: ...
    def before_epoch(self, learn: Learner) -> None: ...
    def after_epoch(self, learn: Learner) -> None: ...
    def after_cancel_epoch(self, learn: Learner) -> None: ...
    def before_train(self, learn: Learner) -> None: ...
    def after_train(self, learn: Learner) -> None: ...
    def after_cancel_train(self, learn: Learner) -> None: ...
    def before_validate(self, learn: Learner) -> None: ...
    def after_validate(self, learn: Learner) -> None: ...
    def after_cancel_validate(self, learn: Learner) -> None: ...
    def before_batch(self, learn: Learner) -> None: ...
    def after_batch(self, learn: Learner) -> None: ...
    def after_cancel_batch(self, learn: Learner) -> None: ...
    def before_forward(self, learn: Learner) -> None: ...
    def after_forward(self, learn: Learner) -> None: ...
    def before_loss(self, learn: Learner) -> None: ...
    def after_loss(self, learn: Learner) -> None: ...
    def before_backward(self, learn: Learner) -> None: ...
    def after_backward(self, learn: Learner) -> None: ...
    def before_step(self, learn: Learner) -> None: ...
    def after_step(self, learn: Learner) -> None: ...
    def after_cancel_step(self, learn: Learner) -> None: ...
    # fmt: on


def _overrides(cb: Callback, event: str) -> bool:
    method = getattr(type(cb), event, None)
    return method is not None and method is not getattr(Callback, event)


class CallbackTable:
    """Callbacks sorted by ``order`` and, per event, the bound hooks that are not empty.

    Args:
        callbacks: the callbacks; more can be added with ``add`` and taken out with ``remove``.
    """

    def __init__(self, callbacks: Iterable[Callback] = ()):
        self.callbacks: list[Callback] = []
        self.hooks: dict[str, tuple[Any, ...]] = {}
        for cb in callbacks:
            self._check(cb)
            self.callbacks.append(cb)
        self._rebuild()

    @staticmethod
    def _check(cb: Any) -> None:
        if not isinstance(cb, Callback):
            raise TrainingError(
                "Received an invalid callback: expected an instance of "
                f"nnblocks.train.Callback. Received: {type(cb).__name__} {cb!r:.60}"
            )

    def _rebuild(self) -> None:
        # A stable sort keeps the order of addition among callbacks of equal `order`.
        self.callbacks.sort(key=lambda cb: cb.order)
        self.hooks = {
            event: tuple(getattr(cb, event) for cb in self.callbacks if _overrides(cb, event))
            for event in EVENTS
        }

    def add(self, *callbacks: Callback) -> None:
        for cb in callbacks:
            self._check(cb)
            self.callbacks.append(cb)
        self._rebuild()

    def remove(self, *callbacks: Callback) -> None:
        for cb in callbacks:
            if cb in self.callbacks:
                self.callbacks.remove(cb)
        self._rebuild()

    def find(self, cls: type) -> list[Callback]:
        """The callbacks that are instances of ``cls``."""
        return [cb for cb in self.callbacks if isinstance(cb, cls)]

    def call(self, hooks: tuple[Any, ...], event: str, learn: Learner) -> None:
        """Run ``hooks`` (non-empty) for ``event``; wrap a failure with its callback's name."""
        for hook in hooks:
            try:
                hook(learn)
            except CANCELS:
                raise
            except NNBlocksError:
                raise  # already names its place (NaN guard, checkpoint errors)
            except Exception as exc:
                cb = hook.__self__
                raise TrainingError(
                    f"callback `{cb.name}` failed at event `{event}` "
                    f"(epoch {learn.epoch}, batch {learn.iter}): {type(exc).__name__}: {exc}"
                ) from exc

    def state_dict(self) -> dict[str, Any]:
        """``{unique name: state}`` of every callback with state."""
        out = {}
        for key, cb in self._keyed():
            state = cb.state_dict()
            if state:
                out[key] = state
        return out

    def load_state_dict(self, states: dict[str, Any]) -> None:
        for key, cb in self._keyed():
            if key in states:
                cb.load_state_dict(states[key])

    def _keyed(self) -> list[tuple[str, Callback]]:
        seen: dict[str, int] = {}
        out = []
        for cb in self.callbacks:
            n = seen.get(cb.name, 0)
            seen[cb.name] = n + 1
            out.append((cb.name if n == 0 else f"{cb.name}.{n}", cb))
        return out

    def table(self) -> list[tuple[str, list[str]]]:
        """``[(event, [callback names])]`` for the events that run at least one callback."""
        return [
            (event, [hook.__self__.name for hook in hooks])
            for event, hooks in self.hooks.items()
            if hooks
        ]
