"""Teacher forcing: the scheduled-sampling decays (Bengio et al. 2015) and the dynamic mode."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from nnblocks.errors import TrainingError
from nnblocks.train import Learner, TeacherForcing
from nnblocks.train.callbacks.teacher_forcing import teacher_forcing_value

from .conftest import blobs


class Seq2SeqStub(nn.Module):
    """Holds `teacher_forcing` and records the value each forward pass sees."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.teacher_forcing = 1.0
        self.seen: list[tuple[bool, float]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, self.teacher_forcing))
        return self.fc(x)


@pytest.mark.parametrize("mode", ["linear", "exponential", "inverse_sigmoid"])
def test_decays_go_from_start_towards_end_monotonically(mode: str) -> None:
    values = [teacher_forcing_value(mode, i, 100, 1.0, 0.1, None) for i in range(101)]
    assert values[0] == pytest.approx(1.0, abs=0.05)
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert all(0.1 <= v <= 1.0 for v in values)
    assert values[-1] < 0.25


def test_formulas_of_the_paper() -> None:
    assert teacher_forcing_value("linear", 10, 100, 1.0, 0.0, 0.02) == pytest.approx(0.8)
    assert teacher_forcing_value("exponential", 3, 100, 1.0, 0.0, 0.9) == pytest.approx(0.729)
    k = 20.0
    assert teacher_forcing_value("inverse_sigmoid", 40, 100, 1.0, 0.0, k) == pytest.approx(
        k / (k + torch.e**2)
    )
    # the default k puts the inverse sigmoid's midpoint halfway through training
    assert teacher_forcing_value("inverse_sigmoid", 500, 1000, 1.0, 0.0, None) == pytest.approx(
        0.5, abs=0.01
    )
    assert teacher_forcing_value("constant", 99, 100, 0.7, 0.0, None) == 0.7


def test_callback_sets_the_model_attribute_during_training_only() -> None:
    model = Seq2SeqStub()
    learn = Learner(
        model,
        (blobs(64), blobs(16, seed=1)),
        "cross_entropy",
        batch_size=16,
        progress=False,
        audit="off",
        callbacks=[TeacherForcing("linear", 1.0, 0.0)],
    )
    learn.fit(2)
    train = [v for training, v in model.seen if training]
    valid = [v for training, v in model.seen if not training]
    assert train == pytest.approx([1.0 - i / 8 for i in range(8)])
    assert set(valid) == {1.0}  # validation runs fully teacher-forced by default
    assert learn.history[-1]["teacher_forcing"] == pytest.approx(train[-1])


def test_dynamic_mode_lowers_on_improvement_and_raises_on_stall() -> None:
    model = Seq2SeqStub()
    tf = TeacherForcing("dynamic", start=0.9, end=0.5, step=0.1, patience=2)
    learn = types.SimpleNamespace(model=model, valid_metrics={}, valid_loss=1.0, history=[{}])
    tf.before_fit(learn)
    values = []
    for loss in [1.0, 0.8, 0.6, 0.6, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]:
        learn.valid_loss = loss
        tf.after_validate(learn)
        values.append(round(model.teacher_forcing, 6))
    assert values == [0.8, 0.7, 0.6, 0.6, 0.7, 0.6, 0.5, 0.5, 0.5, 0.5]
    state = tf.state_dict()
    again = TeacherForcing("dynamic", start=0.9, end=0.5, step=0.1, patience=2)
    again.load_state_dict(state)
    assert again.state_dict() == state


def test_model_without_the_attribute_is_refused() -> None:
    learn = Learner(
        nn.Linear(4, 3),
        (blobs(32), None),
        "cross_entropy",
        progress=False,
        audit="off",
        callbacks=[TeacherForcing()],
    )
    with pytest.raises(TrainingError, match="no attribute `teacher_forcing`"):
        learn.fit(1)
    with pytest.raises(TrainingError, match="mode"):
        TeacherForcing("cosine")
