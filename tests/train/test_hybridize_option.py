"""Learner(hybridize=...): eager by default, compiled only when asked (and checked)."""

import pytest
import torch
from torch import nn

from nnblocks.data import TensorData
from nnblocks.errors import TrainingError
from nnblocks.train import Learner


def _data():
    x = torch.randn(64, 4)
    y = (x.sum(1) > 0).long()
    return TensorData(x, y), TensorData(x[:16], y[:16])


def test_default_is_eager_and_bad_values_are_refused():
    learn = Learner(nn.Linear(4, 2), _data(), loss="cross_entropy", progress=False)
    assert learn.hybridize_mode == "eager"
    learn.fit(1)
    assert learn.hybrid is None and learn.train_model is learn.model
    with pytest.raises(TrainingError, match="hybridize must be"):
        Learner(nn.Linear(4, 2), _data(), loss="cross_entropy", hybridize="fast")


@pytest.mark.slow
def test_compile_mode_trains_the_same_parameters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    learn = Learner(model, _data(), loss="cross_entropy", progress=False, hybridize="compile")
    before = [p.detach().clone() for p in model.parameters()]
    learn.fit(2, lr=1e-2)
    assert learn.hybrid.mode == "compile" and learn.hybrid.max_diff is not None
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
