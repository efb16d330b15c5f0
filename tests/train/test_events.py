"""Events and callbacks: order, cost-free empty hooks, cancelling, errors naming the callback."""

from __future__ import annotations

import pytest
import torch

from nnblocks.errors import TrainingError
from nnblocks.train import (
    EVENTS,
    Callback,
    CallbackTable,
    CancelBatch,
    CancelEpoch,
    CancelFit,
    CancelStep,
    Learner,
)

from .conftest import TinyNet


def _learn(data, *callbacks, **kw):  # type: ignore[no-untyped-def]
    options = dict(loss="cross_entropy", batch_size=32, progress=False, audit="off")
    options.update(kw)
    return Learner(TinyNet(), data, callbacks=list(callbacks), **options)


class Log(Callback):
    """Records every event it sees (overrides all of them)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __getattribute__(self, name: str):  # type: ignore[no-untyped-def]
        if name in EVENTS:
            return lambda learn: object.__getattribute__(self, "seen").append(name)
        return object.__getattribute__(self, name)


for _event in EVENTS:  # make `Log` override every hook so the table calls it
    setattr(Log, _event, lambda self, learn: None)


def test_event_list_is_the_documented_one() -> None:
    steps = ["fit", "epoch", "train", "validate", "batch", "forward", "loss", "backward", "step"]
    for step in steps:
        assert f"before_{step}" in EVENTS and f"after_{step}" in EVENTS
    assert {"after_cancel_batch", "after_cancel_step", "after_cancel_fit"} <= set(EVENTS)
    assert len(set(EVENTS)) == len(EVENTS)


def test_order_of_events_in_one_epoch(data) -> None:  # type: ignore[no-untyped-def]
    log = Log()
    _learn(data, log, batch_size=96).fit(1)  # one training batch, one validation batch
    train = [e for e in log.seen if e not in ("before_fit", "after_fit")]
    assert log.seen[0] == "before_fit" and log.seen[-1] == "after_fit"
    expected_batch = [
        "before_batch",
        "before_forward",
        "after_forward",
        "before_loss",
        "after_loss",
        "before_backward",
        "after_backward",
        "before_step",
        "after_step",
        "after_batch",
    ]
    assert train[:2] == ["before_epoch", "before_train"]
    assert train[2:12] == expected_batch
    assert train[12:14] == ["after_train", "before_validate"]
    assert train[-2:] == ["after_validate", "after_epoch"]


def test_only_overridden_hooks_are_called_and_sorted_by_order() -> None:
    class A(Callback):
        order = 60

        def after_loss(self, learn):  # type: ignore[no-untyped-def]
            pass

    class B(Callback):
        order = 10

        def after_loss(self, learn):  # type: ignore[no-untyped-def]
            pass

    table = CallbackTable([A(), B(), Callback()])
    assert [h.__self__.name for h in table.hooks["after_loss"]] == ["B", "A"]
    assert table.hooks["before_batch"] == ()
    assert ("after_loss", ["B", "A"]) in table.table()


def test_failing_callback_is_named_with_its_event(data) -> None:  # type: ignore[no-untyped-def]
    class Broken(Callback):
        def after_backward(self, learn):  # type: ignore[no-untyped-def]
            raise ValueError("boom")

    with pytest.raises(TrainingError, match=r"`Broken` failed at event `after_backward`.*boom"):
        _learn(data, Broken()).fit(1)


def test_not_a_callback_is_refused(data) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TrainingError, match="callback"):
        _learn(data, object())


def test_cancel_batch_skips_the_step_and_cancel_fit_stops(data) -> None:  # type: ignore[no-untyped-def]
    class SkipOdd(Callback):
        def __init__(self) -> None:
            self.steps = 0

        def before_step(self, learn):  # type: ignore[no-untyped-def]
            if learn.iter % 2:
                raise CancelBatch

        def after_step(self, learn):  # type: ignore[no-untyped-def]
            self.steps += 1

    class StopAfter(Callback):
        def after_batch(self, learn):  # type: ignore[no-untyped-def]
            if learn.training and learn.train_step == 4:
                raise CancelFit

    log = Log()
    skip = SkipOdd()
    learn = _learn(data, skip, StopAfter(), log, batch_size=16)
    learn.fit(5)
    assert learn.train_step == 4 and skip.steps == 2
    assert log.seen.count("after_cancel_batch") == 2
    assert "after_cancel_fit" in log.seen and log.seen[-1] == "after_fit"


def test_cancel_step_keeps_gradients(data) -> None:  # type: ignore[no-untyped-def]
    class NeverStep(Callback):
        def before_step(self, learn):  # type: ignore[no-untyped-def]
            raise CancelStep

    learn = _learn(data, NeverStep(), batch_size=48, schedule=None)
    before = [p.detach().clone() for p in learn.model.parameters()]
    learn.fit(1)
    assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))
    assert all(p.grad is not None for p in learn.model.parameters())  # accumulated, not cleared


def test_cancel_epoch_skips_validation(data) -> None:  # type: ignore[no-untyped-def]
    class EndEpoch(Callback):
        def after_train(self, learn):  # type: ignore[no-untyped-def]
            raise CancelEpoch

    log = Log()
    _learn(data, EndEpoch(), log).fit(2)
    assert "before_validate" not in log.seen and log.seen.count("after_cancel_epoch") == 2


def test_callback_can_change_the_loss(data) -> None:  # type: ignore[no-untyped-def]
    class ZeroLoss(Callback):
        def after_loss(self, learn):  # type: ignore[no-untyped-def]
            if learn.training:
                learn.loss = learn.loss * 0.0

    learn = _learn(data, ZeroLoss(), wd=0.0)
    before = [p.detach().clone() for p in learn.model.parameters()]
    learn.fit(1)
    assert learn.history[0]["train_loss"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))


def test_stop_training_flag_ends_after_the_epoch(data) -> None:  # type: ignore[no-untyped-def]
    class StopNow(Callback):
        def after_epoch(self, learn):  # type: ignore[no-untyped-def]
            learn.stop_training = True

    learn = _learn(data, StopNow())
    learn.fit(4)
    assert len(learn.history) == 1


def test_show_callbacks_lists_events(data, capsys) -> None:  # type: ignore[no-untyped-def]
    class OnLoss(Callback):
        def after_loss(self, learn):  # type: ignore[no-untyped-def]
            pass

    learn = _learn(data, OnLoss())
    table = learn.show_callbacks()
    out = capsys.readouterr().out
    assert "after_loss" in out and "OnLoss" in out and "NanGuard" in out
    assert table.row_count == len(learn.cbs.table())
