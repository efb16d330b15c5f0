"""The Learner: defaults, data forms, modes, shuffling, predict/evaluate, files it writes."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from nnblocks.data import TensorData
from nnblocks.errors import DataError, TrainingError
from nnblocks.train import Callback, Learner

from .conftest import Recorder, TinyNet, blobs


def _learn(data, *callbacks, **kw):  # type: ignore[no-untyped-def]
    options = dict(loss="cross_entropy", batch_size=16, progress=False, audit="off", lr=3e-2)
    options.update(kw)
    return Learner(TinyNet(), data, callbacks=list(callbacks), **options)


def test_fit_learns_and_defaults_are_good(data) -> None:  # type: ignore[no-untyped-def]
    learn = _learn(data, metrics=["accuracy"])
    history = learn.fit(4)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["accuracy"] > 0.9
    opt = learn.opt
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults.get("fused") or opt.defaults.get("foreach")
    assert any(g["weight_decay"] == 0.0 for g in opt.param_groups)  # biases not decayed
    # one-cycle: the learning rate ended far below its peak
    assert history[-1]["lr"] < learn.opt.param_groups[-1]["base_lr"] / 100


def test_train_and_eval_modes_and_inference_mode(data) -> None:  # type: ignore[no-untyped-def]
    class Modes(Callback):
        def __init__(self) -> None:
            self.train, self.valid = set(), set()

        def after_forward(self, learn):  # type: ignore[no-untyped-def]
            state = (
                learn.model.training,
                torch.is_inference_mode_enabled(),
                torch.is_grad_enabled(),
            )
            (self.train if learn.training else self.valid).add(state)

    modes = Modes()
    _learn(data, modes).fit(1)
    assert modes.train == {(True, False, True)}
    assert modes.valid == {(False, True, False)}


def test_training_shuffled_each_epoch_validation_never(data) -> None:  # type: ignore[no-untyped-def]
    class Order(Callback):
        def __init__(self) -> None:
            self.train, self.valid = [], []

        def before_batch(self, learn):  # type: ignore[no-untyped-def]
            (self.train if learn.training else self.valid).append(learn.batch[2].clone())

    order = Order()
    train, valid = blobs(64, ids=True), blobs(40, seed=1, ids=True)
    Learner(
        TinyNet(),
        (train, valid),
        loss=lambda o, y, i: F.cross_entropy(o, y),
        batch_size=16,
        progress=False,
        audit="off",
        callbacks=[order],
    ).fit(2)
    e0, e1 = torch.cat(order.train[:4]), torch.cat(order.train[4:])
    assert sorted(e0.tolist()) == list(range(64)) and sorted(e1.tolist()) == list(range(64))
    assert not torch.equal(e0, torch.arange(64)) and not torch.equal(e0, e1)
    v = torch.cat(order.valid)
    assert torch.equal(v, torch.cat([torch.arange(40), torch.arange(40)]))


def test_same_seed_same_order_and_result(data) -> None:  # type: ignore[no-untyped-def]
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        rec = Recorder()
        _learn(data, rec, seed=7).fit(2)
        runs.append(rec.losses)
    assert runs[0] == runs[1]


@pytest.mark.parametrize("form", ["tuple", "dict", "bundle", "dataset"])
def test_data_forms(form: str) -> None:
    train, valid = blobs(64), blobs(32, seed=1)
    if form == "tuple":
        data = (train, valid)
    elif form == "dict":
        data = {"train": train, "valid": valid}
    elif form == "bundle":
        task = types.SimpleNamespace(
            loss=nn.CrossEntropyLoss(), metrics=[lambda o, y: (o.argmax(1) == y).float().mean()]
        )
        data = types.SimpleNamespace(train=train, valid=valid, test=None, task=task)
    else:
        data = (TensorDataset(*train.tensors), TensorDataset(*valid.tensors))
    loss = None if form == "bundle" else "cross_entropy"
    learn = Learner(
        TinyNet(), data, loss, batch_size=16, progress=False, audit="off", lr=3e-2, num_workers=0
    )
    learn.fit(2)
    assert len(learn.history) == 2 and learn.history[-1]["valid_loss"] < 1.0
    if form == "bundle":
        assert "<lambda>" in learn.history[-1]


def test_bad_data_and_options_are_refused() -> None:
    with pytest.raises(DataError, match="train"):
        Learner(TinyNet(), {"training": blobs()}, "cross_entropy")
    with pytest.raises(TrainingError, match="no loss"):
        Learner(TinyNet(), (blobs(), None))
    with pytest.raises(TrainingError, match="unknown loss `xent`"):
        Learner(TinyNet(), (blobs(), None), "xent")
    with pytest.raises(TrainingError, match="epochs"):
        Learner(TinyNet(), (blobs(), None), "cross_entropy", progress=False).fit(0)
    with pytest.raises(TrainingError, match="Unknown optimizer|unknown optimizer"):
        Learner(TinyNet(), (blobs(), None), "cross_entropy", opt="adamx", progress=False).fit(1)
    with pytest.raises(DataError, match="fewer than one batch"):
        Learner(TinyNet(), (blobs(0), None), "cross_entropy", batch_size=16, progress=False).fit(1)


def test_predict_and_evaluate_agree_with_a_manual_pass(data) -> None:  # type: ignore[no-untyped-def]
    learn = _learn(data, metrics={"acc": lambda o, y: (o.argmax(1) == y).float().mean()})
    learn.fit(1)
    out, y = learn.predict("valid", with_targets=True, batch_size=5)
    valid = data[1]
    learn.model.eval()
    with torch.no_grad():
        manual = learn.model(valid.tensors[0])
    assert torch.allclose(out, manual, atol=1e-6) and torch.equal(y, valid.tensors[1])
    result = learn.evaluate("valid")
    assert result["loss"] == pytest.approx(F.cross_entropy(manual, y).item(), rel=1e-5)
    assert result["acc"] == pytest.approx((manual.argmax(1) == y).float().mean().item())
    assert learn.predict(valid.tensors[0][:3]).shape == (3, 3)


def test_task_evaluate_is_added_for_a_split(data) -> None:  # type: ignore[no-untyped-def]
    calls = []

    def task_evaluate(model, split="test"):  # type: ignore[no-untyped-def]
        calls.append(split)
        return {"exact_match": 0.5}

    task = types.SimpleNamespace(loss=F.cross_entropy, metrics=None, evaluate=task_evaluate)
    bundle = types.SimpleNamespace(train=data[0], valid=data[1], test=blobs(16, seed=3), task=task)
    learn = Learner(TinyNet(), bundle, batch_size=16, progress=False, audit="off")
    learn.fit(1)
    assert learn.evaluate()["exact_match"] == 0.5 and calls == ["test"]


def test_n_inputs_from_tensor_data() -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(3, 2)

        def forward(self, x1, x2):  # type: ignore[no-untyped-def]
            return self.a(x1) + self.b(x2)

    x1, x2, y = torch.randn(32, 3), torch.randn(32, 3), torch.randint(0, 2, (32,))
    learn = Learner(
        Two(),
        (TensorData(x1, x2, y, n_inputs=2), None),
        "cross_entropy",
        batch_size=8,
        progress=False,
        audit="off",
    )
    learn.fit(1)
    assert learn.n_inputs == 2 and learn.train_step == 4


def test_loss_curves_png_written_after_fit(data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    learn = _learn(data, path=tmp_path)
    learn.fit(2)
    png = tmp_path / "loss_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sum(x.numel() for x in learn.loss_log) == 2 * 6


def test_sequence_output_with_named_loss_and_accuracy() -> None:
    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(10, 8)
            self.out = nn.Linear(8, 10)

        def forward(self, tokens):  # type: ignore[no-untyped-def]
            return self.out(self.emb(tokens))  # [B, T, V]

    x = torch.randint(1, 10, (64, 5))
    learn = Learner(
        Tagger(),
        (TensorData(x, x), TensorData(x[:16], x[:16])),
        "cross_entropy",
        metrics=["accuracy"],
        batch_size=16,
        lr=5e-2,
        progress=False,
        audit="off",
    )
    learn.fit(3)
    assert learn.history[-1]["accuracy"] > 0.5


def test_show_results_without_task(data, capsys) -> None:  # type: ignore[no-untyped-def]
    learn = _learn(data)
    rows = learn.show_results(3)
    assert len(rows) == 3 and {"input", "target", "prediction"} <= set(rows[0])
    assert "results on valid" in capsys.readouterr().out


def test_progress_plain_lines_in_ci(data, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CI", "true")
    learn = _learn(
        data, progress=True, metrics={"acc": lambda o, y: (o.argmax(1) == y).float().mean()}
    )
    learn.fit(2)
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert "train_loss" in lines[0] and "acc" in lines[0]
    assert len(lines) == 3 and lines[1].split()[0] == "1" and lines[2].split()[0] == "2"
    assert "\x1b[" not in out  # no terminal control codes


def test_audit_warns_or_raises(data, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    import sys

    report = types.SimpleNamespace(ok=False, __str__=lambda self: "reuse!")
    fake = types.ModuleType("nnblocks.check")
    fake.audit_reuse = lambda model, *inputs: report  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nnblocks.check", fake)
    _learn(data, audit="warn").fit(1)
    assert any("reuse audit" in r.message for r in caplog.records)
    with pytest.raises(TrainingError, match="reuse audit"):
        _learn(data, audit="error").fit(1)


def test_training_metrics_and_a_ready_dataloader() -> None:
    from torch.utils.data import DataLoader

    train = TensorDataset(*blobs(64).tensors)
    loader = DataLoader(train, batch_size=16, shuffle=False)
    acc = {"acc": lambda o, y: (o.argmax(1) == y).float().mean()}
    learn = Learner(
        TinyNet(),
        (loader, blobs(16, seed=1)),
        "cross_entropy",
        metrics=acc,
        train_metrics=True,
        progress=False,
        audit="off",
        lr=3e-2,
    )
    learn.fit(3)
    row = learn.history[-1]
    assert 0.0 <= row["train_acc"] <= 1.0 and "acc" in row
    assert learn.train_step == 12


def test_fit_one_cycle_peaks_at_lr_max(data) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder()
    learn = _learn(data, rec)
    learn.fit_one_cycle(4, 0.02, pct_start=0.25, div=10.0)
    assert max(rec.lrs) == pytest.approx(0.02, rel=0.01)
    assert rec.lrs[0] == pytest.approx(0.002)
    assert rec.lrs.index(max(rec.lrs)) == 6  # 25% of 24 steps
    from nnblocks.train import OneCycle

    assert rec.lrs[-1] == pytest.approx(0.02 * OneCycle(0.25, 10.0)(23 / 24))  # the last step
