"""One evaluation path: get_preds runs the training batch function; tasks score its output."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F

import nnblocks.train.loop as loop_module
from nnblocks.data import TensorData
from nnblocks.data.tasks import ClassificationTask
from nnblocks.train import Callback, Learner

from .conftest import TinyNet


def _learn(data, *callbacks, **kw):  # type: ignore[no-untyped-def]
    options = dict(loss="cross_entropy", batch_size=16, progress=False, audit="off")
    options.update(kw)
    return Learner(TinyNet(), data, callbacks=list(callbacks), **options)


def test_get_preds_matches_a_manual_pass_and_restores_modes(data) -> None:  # type: ignore[no-untyped-def]
    learn = _learn(data)
    learn.fit(1)
    learn.model.train()
    learn.model.drop.eval()  # a mixed state must come back exactly
    out, y, losses = learn.get_preds("valid", with_loss=True, batch_size=5)
    assert learn.model.training and not learn.model.drop.training
    model = TinyNet()
    model.load_state_dict(learn.model.state_dict())
    with torch.no_grad():
        manual = model.eval()(data[1].tensors[0])
    assert torch.allclose(out, manual, atol=1e-6) and torch.equal(y, data[1].tensors[1])
    assert losses.shape == (7,)  # 32 samples in batches of 5
    assert losses[0] == pytest.approx(F.cross_entropy(manual[:5], y[:5]).item(), rel=1e-5)


def test_get_preds_runs_the_same_batch_function_as_training(data, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    phases: list[bool] = []
    original = loop_module.Loop._do_batch

    def spy(self):  # type: ignore[no-untyped-def]
        phases.append(self.training)
        original(self)

    monkeypatch.setattr(loop_module.Loop, "_do_batch", spy)
    learn = _learn(data, batch_size=32)
    learn.fit(1)
    assert phases == [True] * 3 + [False]  # 96 training samples, 32 validation samples
    phases.clear()
    learn.get_preds("valid")
    learn.evaluate("valid")
    learn.predict("test" if learn.splits.get("test") is not None else "valid")
    assert phases == [False] * 3


def test_get_preds_inside_fit_leaves_the_loop_state_alone(data) -> None:  # type: ignore[no-untyped-def]
    class PeekAfterBatch(Callback):
        def __init__(self) -> None:
            self.seen: list[tuple[bool, int, int]] = []

        def after_batch(self, learn):  # type: ignore[no-untyped-def]
            if learn.training and learn.iter == 1:
                before = (learn.training, learn.iter, learn.n_iter)
                learn.get_preds("valid")
                self.seen.append(before)
                self.seen.append((learn.training, learn.iter, learn.n_iter))

    peek = PeekAfterBatch()
    learn = _learn(data, peek)
    learn.fit(1)
    assert peek.seen[0] == peek.seen[1] == (True, 1, 6)
    assert len(learn.history) == 1


def test_get_preds_quiets_callbacks_and_takes_a_step(data) -> None:  # type: ignore[no-untyped-def]
    class Count(Callback):
        calls = 0

        def before_batch(self, learn):  # type: ignore[no-untyped-def]
            Count.calls += 1

    learn = _learn(data, Count())
    ids, _ = learn.get_preds("valid", step=lambda model, batch, n: model(*batch[:n]).argmax(-1))
    assert Count.calls == 0 and ids.dtype == torch.long and ids.shape == (32,)


def test_task_evaluate_scores_predictions_from_get_preds(data) -> None:  # type: ignore[no-untyped-def]
    task = ClassificationTask(3)
    train, valid = data
    task.bind({"train": train, "valid": valid})
    bundle = types.SimpleNamespace(train=train, valid=valid, test=None, task=task)
    learn = Learner(TinyNet(), bundle, batch_size=16, progress=False, audit="off")
    learn.fit(2)
    via_learner = learn.task_metrics("valid")
    bare = task.evaluate(learn.model, "valid")  # a model without a Learner
    assert via_learner["n"] == bare["n"] == 32
    assert via_learner["accuracy"] == pytest.approx(bare["accuracy"])
    assert via_learner["loss"] == pytest.approx(bare["loss"], rel=1e-5)
    gathered = []

    def gather(data, step, batch_size=None):  # type: ignore[no-untyped-def]
        gathered.append(batch_size)
        return learn.get_preds(data, step=step, batch_size=batch_size, concat=False)

    task.evaluate(learn.model, "valid", batch_size=7, gather=gather)
    assert gathered == [7]


def test_show_results_asks_the_task_for_its_prediction(data, capsys) -> None:  # type: ignore[no-untyped-def]
    class Answers(ClassificationTask):
        def predict_step(self, model, batch, n_inputs):  # type: ignore[no-untyped-def]
            return torch.full((len(batch[0]), 3), -1.0).index_fill(1, torch.tensor([2]), 1.0)

    task = Answers(3, classes=["a", "b", "c"])
    task.bind({"train": data[0], "valid": data[1]})
    bundle = types.SimpleNamespace(train=data[0], valid=data[1], test=None, task=task)
    learn = Learner(TinyNet(), bundle, batch_size=16, progress=False, audit="off")
    rows = learn.show_results(4)
    assert len(rows) == 4 and all(r["prediction"].startswith("c ") for r in rows)


def test_predict_a_tensor_with_a_two_input_learner() -> None:
    class Two(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Linear(3, 2)

        def forward(self, x1, x2=None):  # type: ignore[no-untyped-def]
            return self.a(x1) if x2 is None else self.a(x1) + self.a(x2)

    x1, x2, y = torch.randn(8, 3), torch.randn(8, 3), torch.randint(0, 2, (8,))
    learn = Learner(
        Two(), (TensorData(x1, x2, y, n_inputs=2), None), "cross_entropy",
        batch_size=4, progress=False, audit="off",
    )  # fmt: skip
    assert learn.predict(x1).shape == (8, 2) and learn.n_inputs == 2


def test_loss_curves_callback_skips_a_failed_fit(data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    class Boom(Callback):
        def after_epoch(self, learn):  # type: ignore[no-untyped-def]
            raise ValueError("boom")

    learn = _learn(data, Boom(), path=tmp_path)
    with pytest.raises(Exception, match="boom"):
        learn.fit(1)
    assert learn.error is not None and not (tmp_path / "loss_curves.png").exists()
