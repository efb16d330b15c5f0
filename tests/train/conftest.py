"""Tiny models and data for the Learner's tests (each test runs in well under two seconds)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnblocks.data import TensorData
from nnblocks.train import Callback


class TinyNet(nn.Module):
    """4 -> 16 -> 3 with dropout, so RNG state matters for exact resume."""

    def __init__(self, d_in: int = 4, hidden: int = 16, classes: int = 3, p: float = 0.2):
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.drop = nn.Dropout(p)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(torch.relu(self.fc1(x))))  # [B, classes]


def blobs(
    n: int = 96, d_in: int = 4, classes: int = 3, seed: int = 0, ids: bool = False
) -> TensorData:
    """Separable classes; with ``ids`` a third column holds each sample's index."""
    centers = 4.0 * torch.eye(classes, d_in)  # well apart: the Bayes error is ~0.2%
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = centers[y] + torch.randn(n, d_in, generator=g)
    if ids:
        return TensorData(x, y, torch.arange(n), n_inputs=1)
    return TensorData(x, y, n_inputs=1)


def ce_ignoring_ids(out: torch.Tensor, y: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y)


class Recorder(Callback):
    """Records per training step: loss value, sample ids (column 2, if any), lr."""

    order = 95

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.ids: list[list[int]] = []
        self.lrs: list[float] = []

    def after_batch(self, learn) -> None:  # type: ignore[no-untyped-def]
        if learn.training:
            self.losses.append(float(learn.loss.detach()))
            if len(learn.batch) > 2:
                self.ids.append(learn.batch[2].tolist())
            self.lrs.append(learn.opt.param_groups[0]["lr"])


@pytest.fixture
def data() -> tuple[TensorData, TensorData]:
    return blobs(96, seed=0), blobs(32, seed=1)
