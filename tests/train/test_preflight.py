"""Data and model that disagree fail before the first step, saying which side expects what."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nnblocks.data import TensorData
from nnblocks.errors import DataError, TrainingError
from nnblocks.train import Learner

from .conftest import TinyNet, blobs


def _fit(model: nn.Module, data: TensorData, loss="cross_entropy") -> nn.Module:  # type: ignore[no-untyped-def]
    before = [p.detach().clone() for p in model.parameters()]
    learn = Learner(model, (data, None), loss, batch_size=16, progress=False, audit="off")
    try:
        learn.fit(1)
    finally:
        # Nothing was trained: the check runs before the first step.
        assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
        assert learn.train_step == 0
    return model


def test_too_few_classes_names_both_sides() -> None:
    data = blobs(64, classes=3)
    data.tensors[1][40] = 7  # one label beyond the first batch
    with pytest.raises(DataError, match=r"outputs 3 classes.*class id 7.*at least 8 classes"):
        _fit(TinyNet(classes=3), data)


def test_wrong_input_width_names_the_first_layer() -> None:
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    with pytest.raises(
        DataError, match=r"first layer `fc1` \(Linear\) expects 4 input features; the data has 6"
    ):
        _fit(TinyNet(d_in=4), TensorData(x, y))


def test_float_targets_for_class_ids() -> None:
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,)).float()
    with pytest.raises(DataError, match=r"integer class ids \(int64\).*targets are float32"):
        _fit(TinyNet(), TensorData(x, y))


def test_loss_must_be_scalar() -> None:
    with pytest.raises(TrainingError, match="scalar"):
        _fit(
            TinyNet(),
            blobs(32),
            loss=lambda o, y: nn.functional.cross_entropy(o, y, reduction="none"),
        )


def test_check_leaves_rng_and_batchnorm_statistics_alone() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3))
    from nnblocks.train.preflight import check_first_batch

    batch = blobs(32)[torch.arange(16)]
    stats = model[1].running_mean.clone()
    state = torch.get_rng_state()
    check_first_batch(model, nn.functional.cross_entropy, batch, 1)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(model[1].running_mean, stats)
    assert model.training
