"""Continual learning: reservoir rehearsal, EWC, LwF, grown heads, and the saved state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nnblocks
from nnblocks import surgery
from nnblocks.data import TensorData
from nnblocks.errors import CheckpointError, DataError, SpecError
from nnblocks.train import Callback, Learner
from nnblocks.train.continual import (
    EWC,
    LwF,
    Rehearsal,
    ReservoirBuffer,
    continual_callbacks,
    fisher_information,
    save_state,
)


def blobs(classes, n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor(classes)[torch.randint(0, len(classes), (n,), generator=g)]
    centres = torch.randn(10, 6, generator=torch.Generator().manual_seed(99)) * 3
    return TensorData(centres[y] + torch.randn(n, 6, generator=g), y)


def net(classes=10):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, classes))


def learner(model, data, cbs=()):
    return Learner(
        model, (data, None), "cross_entropy", batch_size=16, progress=False, audit="off",
        seed=0, callbacks=cbs,
    )  # fmt: skip


def accuracy(model, data):
    x, y = data.tensors
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean())


def test_the_reservoir_keeps_a_uniform_sample_of_everything_seen():
    buffer = ReservoirBuffer(size=100, seed=0)
    for start in range(0, 2000, 50):
        ids = torch.arange(start, start + 50)
        buffer.add((ids, ids * 2))
    assert len(buffer) == 100 and buffer.seen == 2000
    kept = torch.stack(buffer.columns[0])
    assert torch.equal(torch.stack(buffer.columns[1]), kept * 2)  # columns stay aligned
    assert 700 < float(kept.float().mean()) < 1300  # uniform over 0..1999, mean ~1000
    assert (kept < 1000).sum() > 30 and (kept >= 1000).sum() > 30


def test_rehearsal_mixes_the_buffer_in_at_the_fraction_and_fills_it():
    old = ReservoirBuffer(size=50, seed=0)
    old.add(blobs([0, 1], n=50).tensors)
    sizes, labels = [], []

    class Spy(Callback):
        order = 6

        def before_batch(self, learn):
            if learn.training:
                sizes.append(int(learn.batch[0].shape[0]))
                labels.append(learn.batch[1])

    cb = Rehearsal(old, fraction=0.2)
    learner(net(), blobs([5, 6], n=64), [cb, Spy()]).fit(1)
    assert sizes == [20] * 4  # 16 new + 4 from memory: 20% of the mixed batch
    assert all(set(t[16:].tolist()) <= {0, 1} and set(t[:16].tolist()) <= {5, 6} for t in labels)
    assert cb.buffer.seen == 50 + 64 and len(cb.buffer) == 50


def test_a_buffer_that_does_not_fit_the_new_inputs_is_refused(tmp_path):
    buffer = ReservoirBuffer(size=10)
    buffer.add(blobs([0]).tensors)
    buffer.save(tmp_path / "rehearsal.safetensors")
    loaded = ReservoirBuffer.load(tmp_path / "rehearsal.safetensors")
    wide = TensorData(torch.randn(32, 7), torch.zeros(32, dtype=torch.long))
    with pytest.raises(DataError, match=r"rehearsal\.safetensors.*column 0.*\(6,\).*\(7,\)"):
        learner(nn.Linear(7, 2), wide, [Rehearsal(loaded)]).fit(1)
    with pytest.raises(CheckpointError, match="nothere"):
        ReservoirBuffer.load(tmp_path / "nothere.safetensors")


def test_ewc_penalty_is_zero_at_the_anchor_and_holds_important_weights():
    task1, task2 = blobs([0, 1, 2, 3, 4]), blobs([5, 6, 7, 8, 9], seed=1)
    model = net()
    learn = learner(model, task1, [EWC(lam=1000.0)])
    learn.fit(4, lr=1e-2)
    ewc = learn.cbs.find(EWC)[0]
    ((importance, anchor),) = ewc.penalties
    assert set(importance) == {n for n, _ in model.named_parameters()}
    assert all((v >= 0).all() for v in importance.values()) and any(
        v.sum() > 0 for v in importance.values()
    )
    ewc.before_fit(learn)
    assert float(ewc.penalty(model).detach()) == 0.0
    direct = fisher_information(learn)
    assert all(torch.allclose(direct[k], importance[k]) for k in importance)

    def drift(cbs):
        m = net()
        m.load_state_dict(model.state_dict())
        learner(m, task2, cbs).fit(3, lr=1e-2)
        params = dict(m.named_parameters())
        return sum(
            float((f * (params[n].detach() - anchor[n]) ** 2).sum()) for n, f in importance.items()
        )

    # the quantity EWC penalises: importance-weighted distance from task one's weights
    assert drift([EWC(lam=1000.0, penalties=ewc.penalties, consolidate=False)]) < 0.3 * drift([])


def test_lwf_distils_nothing_from_an_identical_teacher_and_only_old_units():
    lwf = LwF(alpha=1.0, temperature=2.0)
    logits = torch.randn(8, 5)
    assert float(lwf.distillation(logits, logits)) == pytest.approx(0.0, abs=1e-6)
    grown = torch.cat([logits, torch.randn(8, 5) * 10], dim=-1)  # new units are ignored
    assert float(lwf.distillation(grown, logits)) == pytest.approx(0.0, abs=1e-6)
    assert float(lwf.distillation(torch.randn(8, 5), logits)) > 0.01


def test_lwf_keeps_old_outputs_closer_than_naive_training():
    task1, task2 = blobs([0, 1, 2, 3, 4]), blobs([5, 6, 7, 8, 9], seed=1)
    base = net()
    learner(base, task1).fit(4, lr=1e-2)
    x = task1.tensors[0]

    def change(cbs):
        m = net()
        m.load_state_dict(base.state_dict())
        learner(m, task2, cbs).fit(3, lr=1e-2)
        with torch.no_grad():
            return float((m(x)[:, :5].softmax(-1) - base(x)[:, :5].softmax(-1)).abs().mean())

    assert change([LwF(alpha=5.0)]) < change([])


def test_grow_keeps_the_old_rows_and_saves(tmp_path):
    model = nnblocks.build(
        {"name": "mlp", "in_features": 6, "num_classes": 5, "hidden": [8]}, "model"
    ).eval()
    x = torch.randn(4, 6)
    before = model(x)
    assert surgery.grow(model, "head", 10) == ["head"]
    after = model(x)
    assert after.shape == (4, 10) and torch.equal(after[:, :5], before)
    nnblocks.save(model, tmp_path / "m")
    assert torch.equal(nnblocks.load(tmp_path / "m").eval()(x), after)
    with pytest.raises(SpecError, match="out_features"):
        surgery.grow(model, "head", 3)
    with pytest.raises(SpecError, match="linear head"):
        surgery.grow(model, "layers.0.norm", 12)


def test_the_state_a_run_keeps_feeds_the_next_task(tmp_path):
    first = continual_callbacks(
        {"rehearsal": {"size": 30}, "ewc": {"lambda": 10}, "lwf": None}, None
    )
    assert [type(cb) for cb in first] == [Rehearsal, EWC]  # no teacher on the first task
    learner(net(), blobs([0, 1]), first).fit(1)
    save_state(tmp_path, first)
    second = continual_callbacks(
        {"rehearsal": {"size": 30, "fraction": 0.5}, "ewc": {"lambda": 10}, "lwf": {}}, tmp_path
    )
    assert [type(cb) for cb in second] == [Rehearsal, EWC, LwF]
    assert len(second[0].buffer) == 30 and len(second[1].penalties) == 1
    with pytest.raises(SpecError, match=r"continual\.replay"):
        continual_callbacks({"replay": {}}, None)
    with pytest.raises(SpecError, match=r"continual\.ewc"):
        continual_callbacks({"ewc": {"lam": 3}}, None)
    with pytest.raises(CheckpointError, match=r"rehearsal\.safetensors"):
        continual_callbacks({"rehearsal": {}}, tmp_path / "elsewhere")


def test_rehearsal_keeps_task_one_far_above_naive_fine_tuning():
    task1, task2 = blobs([0, 1, 2, 3, 4], n=400), blobs([5, 6, 7, 8, 9], n=400, seed=1)
    test1 = blobs([0, 1, 2, 3, 4], n=400, seed=2)
    base = net()
    collect = Rehearsal(size=100)
    learner(base, task1, [collect]).fit(3, lr=1e-2)
    assert accuracy(base, test1) > 0.9

    def after_task2(cbs):
        m = net()
        m.load_state_dict(base.state_dict())
        learner(m, task2, cbs).fit(3, lr=1e-2)
        return accuracy(m, test1)

    naive = after_task2([])
    replay = after_task2([Rehearsal(collect.buffer, fraction=0.5)])
    assert replay > naive + 0.3 and replay > 0.8, (naive, replay)
