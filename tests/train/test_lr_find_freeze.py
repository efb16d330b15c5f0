"""lr_find (sweep, suggestions, nothing changed) and freezing (slots, globs, train_bn)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from nnblocks.errors import TrainingError
from nnblocks.train import Learner, freeze, unfreeze
from nnblocks.train.lr_find import suggest_steepest, suggest_valley
from nnblocks.train.rng import rng_state

from .conftest import TinyNet, blobs


def test_lr_find_suggests_and_restores_everything(tmp_path: Path) -> None:
    learn = Learner(
        TinyNet(),
        (blobs(256), None),
        "cross_entropy",
        batch_size=16,
        progress=False,
        audit="off",
        path=tmp_path,
    )
    learn.fit(1)
    weights = [p.detach().clone() for p in learn.model.parameters()]
    opt_state = {
        k: v.clone() for k, v in learn.opt.state[learn.opt.param_groups[0]["params"][0]].items()
    }
    rng = rng_state()
    result = learn.lr_find(num_it=60)
    assert 1e-7 <= result.valley <= 10 and 1e-7 <= result.steepest <= 10
    assert len(result.lrs) == len(result.losses) <= 60
    assert result.lrs == sorted(result.lrs)
    assert (tmp_path / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    assert all(torch.equal(a, b) for a, b in zip(weights, learn.model.parameters()))
    restored = learn.opt.state[learn.opt.param_groups[0]["params"][0]]
    assert all(torch.equal(opt_state[k], restored[k]) for k in opt_state)
    assert rng_state() == rng
    with pytest.raises(TrainingError, match="start_lr"):
        learn.lr_find(start_lr=1.0, end_lr=0.1)


def test_suggestions_on_a_known_curve() -> None:
    lrs = [10 ** (-6 + i * 0.1) for i in range(60)]  # 1e-6 .. ~1e-0.1
    # flat, then falling fastest at index 30 (lr 1e-3), bottom at 45, then up.
    losses = [
        2.0 - 1.0 / (1 + 2.718 ** (-(i - 30) / 3)) + (0.02 * (i - 45) ** 2 if i > 45 else 0)
        for i in range(60)
    ]
    assert suggest_steepest(lrs, losses) == pytest.approx(lrs[30])
    valley = suggest_valley(lrs, losses)
    assert lrs[10] <= valley <= lrs[45]


def test_freeze_by_slot_and_glob_keeps_batchnorm_trainable() -> None:
    model = nn.Sequential()
    model.add_module("encoder", nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8)))
    model.add_module("head", nn.Linear(8, 2))
    names = freeze(model, "encoder")
    assert names == ["encoder"]
    assert not model.encoder[0].weight.requires_grad
    assert model.encoder[1].weight.requires_grad  # train_bn=True by default
    assert model.head.weight.requires_grad
    unfreeze(model)
    freeze(model, "enc*.0", train_bn=False)
    assert not model.encoder[0].weight.requires_grad and model.encoder[1].weight.requires_grad
    freeze(model, train_bn=False)
    assert not any(p.requires_grad for p in model.parameters())
    unfreeze(model, "head")
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        "head.weight",
        "head.bias",
    ]
    with pytest.raises(TrainingError, match="matches no module"):
        freeze(model, "decoder.*")


def test_frozen_parameters_do_not_move_during_fit() -> None:
    learn = Learner(
        TinyNet(),
        (blobs(64), None),
        "cross_entropy",
        batch_size=16,
        progress=False,
        audit="off",
        lr=slice(1e-3, 1e-2),
        param_groups=["fc1.*"],
    )
    learn.freeze("fc1")
    frozen = learn.model.fc1.weight.detach().clone()
    head = learn.model.fc2.weight.detach().clone()
    learn.fit(1)
    assert torch.equal(frozen, learn.model.fc1.weight)
    assert not torch.equal(head, learn.model.fc2.weight)
    assert sorted({g["base_lr"] for g in learn.opt.param_groups}) == pytest.approx([1e-3, 1e-2])
