"""Teacher forcing: the scheduled-sampling decays (Bengio et al. 2015) and the dynamic mode."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

import nnblocks
from nnblocks.data import TensorData
from nnblocks.errors import TrainingError
from nnblocks.train import Callback, Learner, TeacherForcing
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


def _seq2seq():
    torch.manual_seed(0)
    return nnblocks.build(
        {"name": "transformer_seq2seq", "src_vocab_size": 20, "tgt_vocab_size": 20, "dim": 16,
         "heads": 2, "encoder_layers": 1, "decoder_layers": 1, "pad_id": 0, "bos_id": 1,
         "eos_id": 2},
        "model",
    )  # fmt: skip


def _pairs(n=64):
    g = torch.Generator().manual_seed(0)
    src = torch.randint(3, 20, (n, 6), generator=g)
    tgt = torch.cat([torch.ones(n, 1, dtype=torch.long), src.flip(1), torch.full((n, 1), 2)], 1)
    tgt[: n // 2, -2:] = 0  # some padding
    return TensorData(src, tgt[:, :-1], tgt[:, 1:], n_inputs=2)


def test_two_pass_mixes_predictions_into_the_transformer_input() -> None:
    model = _seq2seq().eval()
    data = _pairs()
    src, tgt_in, _ = data.tensors
    tf = TeacherForcing("constant", start=0.0, method="two_pass")
    mixed = tf.mix(model, src, tgt_in, 0.0)  # keep nothing: every input is the model's guess
    with torch.no_grad():
        guess = model(src, tgt_in).argmax(-1)
    assert torch.equal(mixed[:, 0], tgt_in[:, 0])  # BOS stays
    assert torch.equal(mixed[tgt_in == 0], tgt_in[tgt_in == 0])  # padding stays
    real = (tgt_in != 0)[:, 1:]
    assert torch.equal(mixed[:, 1:][real], guess[:, :-1][real])
    assert torch.equal(tf.mix(model, src, tgt_in, 1.0), tgt_in)  # keep all: gold
    torch.manual_seed(0)
    half = tf.mix(model, src, tgt_in, 0.5)
    differs = (guess[:, :-1] != tgt_in[:, 1:])[real]
    kept = (half[:, 1:] == tgt_in[:, 1:])[real][differs].float().mean()
    assert 0.3 < float(kept) < 0.7  # where guess and gold differ, about half keep the gold


def test_two_pass_schedule_drives_training_of_a_transformer() -> None:
    data = _pairs()
    gold_share: list[float] = []
    before: list[torch.Tensor] = []

    class Gold(Callback):
        order = 14  # before TeacherForcing (15): the gold decoder input

        def before_batch(self, learn):
            if learn.training:
                before[:] = [learn.batch[1]]

    class Mixed(Callback):
        order = 16  # after it: the mixed one

        def before_batch(self, learn):
            if learn.training:
                real = before[0][:, 1:] != 0
                same = learn.batch[1][:, 1:] == before[0][:, 1:]
                gold_share.append(float(same[real].float().mean()))

    tf = TeacherForcing("linear", 1.0, 0.0, method="two_pass")
    learn = Learner(
        _seq2seq(), (TensorData(*data.tensors, n_inputs=2), None), "cross_entropy",
        batch_size=64, progress=False, audit="off", seed=0, callbacks=[tf, Gold(), Mixed()],
    )  # fmt: skip
    learn.loss_func = lambda out, target: nn.functional.cross_entropy(
        out.reshape(-1, out.shape[-1]), target.reshape(-1), ignore_index=0
    )
    learn.fit(8, lr=1e-2)
    assert gold_share[0] == 1.0  # eps = 1 at the first step: all gold
    assert gold_share[-1] < 0.9  # eps near 0 at the end: the model's own guesses
    assert learn.history[-1]["teacher_forcing"] < 0.2


def test_two_pass_needs_a_two_input_model() -> None:
    learn = Learner(
        nn.Linear(4, 3), (blobs(32), None), "cross_entropy", progress=False, audit="off",
        callbacks=[TeacherForcing(method="two_pass")],
    )  # fmt: skip
    with pytest.raises(TrainingError, match="n_inputs=2"):
        learn.fit(1)
    with pytest.raises(TrainingError, match="method"):
        TeacherForcing(method="sometimes")
