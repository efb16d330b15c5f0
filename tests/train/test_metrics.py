"""Metrics by name (task inferred from shapes), torchmetrics objects and plain functions."""

from __future__ import annotations

import pytest
import torch
import torchmetrics

from nnblocks.errors import DataError, TrainingError
from nnblocks.train import MetricSet
from nnblocks.train.metrics import infer_task


def test_infer_task_from_shapes() -> None:
    assert infer_task(torch.randn(4, 5), torch.zeros(4, dtype=torch.long), where="m") == (
        "multiclass",
        5,
    )
    assert infer_task(torch.randn(4, 7, 5), torch.zeros(4, 7, dtype=torch.long), where="m") == (
        "multiclass",
        5,
    )
    assert infer_task(torch.randn(4), torch.zeros(4), where="m") == ("binary", None)
    assert infer_task(torch.randn(4, 1), torch.zeros(4, dtype=torch.long), where="m") == (
        "binary",
        None,
    )
    assert infer_task(torch.randn(4, 3), torch.zeros(4, 3), where="m") == ("multilabel", 3)
    with pytest.raises(DataError, match="metric `acc`.*\\[4, 3\\]"):
        infer_task(torch.randn(4, 3), torch.zeros(5), where="acc")


def test_accuracy_by_name_accumulates_over_batches() -> None:
    ms = MetricSet(["accuracy"])
    out = torch.randn(20, 4)
    y = torch.randint(0, 4, (20,))
    ms.update(out[:7], (y[:7],))
    ms.update(out[7:], (y[7:],))
    assert ms.compute()["accuracy"] == pytest.approx((out.argmax(1) == y).float().mean().item())
    ms.reset()
    ms.update(out[:5], (out[:5].argmax(1),))
    assert ms.compute()["accuracy"] == 1.0


def test_sequence_accuracy_with_ignore_index() -> None:
    ms = MetricSet([{"name": "accuracy", "ignore_index": 0}])
    out = torch.randn(3, 6, 9)
    y = out.argmax(-1)
    y[:, 4:] = 0  # padding
    out[0, 0] = -out[0, 0]  # one wrong real token (argmax changes)
    ms.update(out, (y,))
    real = (y != 0).sum().item()
    right = ((out.argmax(-1) == y) & (y != 0)).sum().item()
    assert ms.compute()["accuracy"] == pytest.approx(right / real)


def test_function_and_metric_objects_and_names() -> None:
    ms = MetricSet({"mean_out": lambda o, y: o.mean(), "mae": torchmetrics.MeanAbsoluteError()})
    ms.update(torch.ones(2), (torch.zeros(2),))
    ms.update(torch.full((6,), 3.0), (torch.zeros(6),))
    result = ms.compute()
    assert result["mean_out"] == pytest.approx((2 * 1 + 6 * 3) / 8)  # sample-weighted
    assert result["mae"] == pytest.approx(20 / 8)
    assert ms.names == ["mean_out", "mae"]


def test_unknown_metric_and_duplicates() -> None:
    with pytest.raises(TrainingError, match="unknown metric `acuracy`"):
        MetricSet(["acuracy"])
    with pytest.raises(TrainingError, match="share the name"):
        MetricSet(["accuracy", "accuracy"])
