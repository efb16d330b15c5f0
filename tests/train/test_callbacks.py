"""Built-in callbacks: accumulation, clipping, mixed precision, early stopping, logs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from torch import nn

from nnblocks.data import TensorData
from nnblocks.errors import TrainingError
from nnblocks.train import (
    Callback,
    CSVLogger,
    EarlyStopping,
    GradientClip,
    Learner,
    SaveCheckpoint,
    TensorBoardLogger,
)

from .conftest import TinyNet, blobs

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _learn(data, *callbacks, model=None, **kw):  # type: ignore[no-untyped-def]
    options = dict(loss="cross_entropy", batch_size=16, progress=False, audit="off", lr=1e-2)
    options.update(kw)
    return Learner(model or TinyNet(p=0.0), data, callbacks=list(callbacks), **options)


def test_gradient_accumulation_matches_a_larger_batch() -> None:
    data = (blobs(64), None)
    torch.manual_seed(0)
    big = _learn(data, batch_size=16, schedule=None, seed=3)
    big.fit(2)
    torch.manual_seed(0)
    small = _learn(data, batch_size=4, grad_accumulation=4, schedule=None, seed=3)
    small.fit(2)
    for p, q in zip(big.model.parameters(), small.model.parameters()):
        assert torch.allclose(p, q, atol=1e-5), (p - q).abs().max()
    assert (
        small.opt.state[next(iter(small.model.parameters()))]["step"]
        == big.opt.state[next(iter(big.model.parameters()))]["step"]
    )


def test_gradient_clip_bounds_the_norm() -> None:
    class Norm(Callback):
        order = 45  # after clipping

        def __init__(self) -> None:
            self.norms: list[float] = []

        def before_step(self, learn):  # type: ignore[no-untyped-def]
            grads = [p.grad for p in learn.model.parameters() if p.grad is not None]
            self.norms.append(
                float(
                    torch.linalg.vector_norm(
                        torch.stack([torch.linalg.vector_norm(g) for g in grads])
                    )
                )
            )

    norm = Norm()
    _learn((blobs(64), None), norm, clip_grad=0.05).fit(1)
    assert max(norm.norms) <= 0.05 + 1e-6
    with pytest.raises(TrainingError, match="max_norm"):
        GradientClip(0)


def test_bf16_autocast_on_cpu() -> None:
    class Dtypes(Callback):
        def __init__(self) -> None:
            self.seen: set[torch.dtype] = set()

        def after_forward(self, learn):  # type: ignore[no-untyped-def]
            self.seen.add(learn.pred.dtype)

    d = Dtypes()
    learn = _learn((blobs(64), blobs(16, seed=1)), d, mixed_precision="bf16")
    learn.fit(1)
    assert d.seen == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())  # master weights


def test_fp16_needs_cuda() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA present: fp16 is allowed")
    with pytest.raises(TrainingError, match="fp16.*CUDA"):
        _learn((blobs(32), None), mixed_precision="fp16").fit(1)
    with pytest.raises(TrainingError, match="bf16"):
        _learn((blobs(32), None), mixed_precision="int8")


@cuda
def test_fp16_with_grad_scaler_on_cuda(tmp_path: Path) -> None:
    learn = _learn(
        (blobs(64), blobs(16, seed=1)),
        SaveCheckpoint(tmp_path),
        mixed_precision="fp16",
        clip_grad=1.0,
        device="cuda",
    )
    learn.fit(2)
    assert (
        learn.scaler is not None
        and learn.history[-1]["train_loss"] < learn.history[0]["train_loss"]
    )
    from nnblocks.train.checkpoint import read_training_document

    assert read_training_document(tmp_path / "last")["scaler"]["scale"] > 0


@cuda
def test_bf16_and_resume_on_cuda(tmp_path: Path) -> None:
    learn = _learn(
        (blobs(64), None),
        SaveCheckpoint(tmp_path, every_n_steps=2, save_best=False),
        mixed_precision="bf16",
        device="cuda",
    )
    learn.fit(1)
    again = _learn((blobs(64), None), mixed_precision="bf16", device="cuda")
    again.fit(1, resume=tmp_path / "last")
    assert again.train_step == learn.train_step


def test_early_stopping_stops_after_patience() -> None:
    class Worse(Callback):
        order = 65  # after the row is written, before early stopping (70)

        def after_epoch(self, learn):  # type: ignore[no-untyped-def]
            learn.history[-1]["valid_loss"] = float(learn.epoch)  # gets worse every epoch

    learn = _learn((blobs(32), blobs(16, seed=1)), Worse(), EarlyStopping(patience=2))
    learn.fit(10)
    assert len(learn.history) == 3
    with pytest.raises(TrainingError, match="cannot monitor `f1`"):
        _learn((blobs(32), blobs(16, seed=1)), EarlyStopping("f1")).fit(1)


def test_csv_history(tmp_path: Path) -> None:
    learn = _learn((blobs(32), blobs(16, seed=1)), CSVLogger(), path=tmp_path)
    learn.fit(3)
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert float(rows[-1]["valid_loss"]) == pytest.approx(learn.history[-1]["valid_loss"])


def test_best_and_last_checkpoints(tmp_path: Path) -> None:
    saver = SaveCheckpoint("ck")
    learn = _learn((blobs(32), blobs(16, seed=1)), saver, path=tmp_path)
    learn.fit(3)
    from nnblocks.train.checkpoint import read_training_document

    best = read_training_document(tmp_path / "ck" / "best")
    last = read_training_document(tmp_path / "ck" / "last")
    assert last["epoch"] == 3
    losses = [r["valid_loss"] for r in learn.history]
    assert best["epoch"] == losses.index(min(losses)) + 1


def test_tensorboard_logger(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    learn = _learn((blobs(32), blobs(16, seed=1)), TensorBoardLogger("tb", every=1), path=tmp_path)
    learn.fit(1)
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())


def test_frozen_batchnorm_kept_in_eval_with_train_bn_false() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    learn = Learner(
        model, (blobs(32), None), "cross_entropy", batch_size=16, progress=False, audit="off"
    )
    learn.freeze("0", "1", train_bn=False)
    stats = model[1].running_mean.clone()
    learn.fit(1)
    assert torch.equal(model[1].running_mean, stats)
    learn.unfreeze()
    learn.fit(1)
    assert not torch.equal(model[1].running_mean, stats)


def test_debug_runs_under_watch_numerics(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import contextlib
    import sys
    import types

    entered = []

    @contextlib.contextmanager
    def watch_numerics(model):  # type: ignore[no-untyped-def]
        entered.append(model)
        yield

    fake = types.ModuleType("nnblocks.check.numerics")
    fake.watch_numerics = watch_numerics  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nnblocks.check.numerics", fake)
    learn = _learn((blobs(32), None), debug=True)
    learn.fit(1)
    assert entered == [learn.model]


def test_dataset_through_dataloader_keeps_the_seeded_order() -> None:
    from torch.utils.data import TensorDataset

    from nnblocks.train.loaders import DatasetLoader, TensorLoader

    td = blobs(40, ids=True)
    a = TensorLoader(td, 8, shuffle=True, seed=5)
    b = DatasetLoader(TensorDataset(*td.tensors), 8, shuffle=True, seed=5, num_workers=0)
    a.set_epoch(2, start=1)
    b.set_epoch(2, start=1)
    ids_a = [batch[2].tolist() for batch in a]
    ids_b = [batch[2].tolist() for batch in b]
    assert ids_a == ids_b and len(ids_a) == 4


def test_index_loader_shards_global_batches() -> None:
    from nnblocks.train.loaders import TensorLoader

    td = TensorData(torch.arange(50), n_inputs=1)
    whole = [b[0].tolist() for b in TensorLoader(td, 10, shuffle=True, seed=1)]
    parts = [
        [b[0].tolist() for b in TensorLoader(td, 10, shuffle=True, seed=1, rank=r, world_size=2)]
        for r in range(2)
    ]
    assert all(p0 + p1 == w for p0, p1, w in zip(parts[0], parts[1], whole))
    with pytest.raises(Exception, match="divisible"):
        TensorLoader(td, 9, shuffle=True, world_size=2)
