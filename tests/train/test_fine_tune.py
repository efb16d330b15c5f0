"""Learner.fine_tune: new parameters first, then all with discriminative rates (fastai's sense)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nnblocks
from nnblocks import surgery
from nnblocks.data import TensorData
from nnblocks.errors import TrainingError
from nnblocks.train import Learner
from nnblocks.train.fine_tune import new_parameters


def blobs(n=96, features=4, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = torch.randn(n, features, generator=g) + 2.0 * nn.functional.one_hot(y, features).float()
    return TensorData(x, y)


def mlp():
    torch.manual_seed(0)
    return nnblocks.build(
        {"name": "mlp", "in_features": 4, "num_classes": 3, "hidden": [8, 8]}, "model"
    )


def learner(model, **options):
    return Learner(
        model, (blobs(), blobs(48, seed=1)), "cross_entropy", batch_size=16, progress=False,
        audit="off", seed=0, **options,
    )  # fmt: skip


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def moved(model, before):
    return {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}


def test_frozen_phase_trains_the_head_then_everything_with_lower_body_rates():
    model = mlp()
    learn = learner(model)
    start = snapshot(model)
    seen: list[tuple[set[str], list[float]]] = []

    class Spy(nnblocks.train.Callback):
        def after_fit(self, learn):
            lrs = sorted({g["base_lr"] for g in learn.opt.param_groups})
            seen.append((moved(learn.model, start), lrs))

    learn.add_callbacks(Spy())
    history = learn.fine_tune(2, freeze_epochs=1, base_lr=4e-3, lr_mult=10)
    assert [row["phase"] for row in history] == ["frozen", "unfrozen", "unfrozen"]
    (first, lrs_1), (second, lrs_2) = seen
    linears = {n for n in start if ".linear." in n}
    assert {"head.weight", "head.bias"} <= first and not first & linears
    # fastai's train_bn: the frozen body's batch norms keep their affine parameters trainable
    assert {n for n in first if ".norm." in n}
    assert linears <= second
    assert lrs_1 == pytest.approx([4e-4, 4e-3])  # slice(base_lr): body base_lr/10
    assert lrs_2 == pytest.approx([2e-4, 2e-3])  # slice(base_lr/2/lr_mult, base_lr/2)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("policy", ["eval", "stats", "affine"])
def test_the_norm_policy_holds_in_the_frozen_phase(policy):
    model = mlp()
    learn = learner(model)
    norm = model.layers[0].norm
    stats, weight = norm.running_mean.clone(), norm.weight.detach().clone()
    after_first: list[tuple[bool, bool]] = []

    class Spy(nnblocks.train.Callback):
        def after_fit(self, learn):
            if not after_first:
                after_first.append(
                    (torch.equal(norm.running_mean, stats), torch.equal(norm.weight, weight))
                )

    learn.add_callbacks(Spy())
    learn.fine_tune(1, freeze_epochs=1, train_bn=policy)
    same_stats, same_weight = after_first[0]
    assert same_stats == (policy == "eval")
    assert same_weight == (policy != "affine")
    assert not torch.equal(norm.running_mean, stats)  # phase two trains everything


def test_parts_put_in_by_surgery_are_the_new_parameters():
    torch.manual_seed(0)
    lm = nnblocks.build(
        {"name": "transformer_lm", "vocab_size": 30, "dim": 16, "heads": 2, "layers": 2}
    )
    surgery.beside(lm, "decoder.layers.1.self_attention", "mha")
    assert new_parameters(lm) == [
        "decoder.layers.1.self_attention.branches.1",
        "decoder.layers.1.self_attention.gate",
    ]
    g = torch.Generator().manual_seed(0)
    seqs = torch.randint(3, 30, (64, 9), generator=g)
    data = (TensorData(seqs[:, :-1], seqs[:, 1:]), None)
    learn = Learner(lm, data, "cross_entropy", batch_size=16, progress=False, audit="off")
    start = snapshot(lm)
    history = learn.fine_tune(1, freeze_epochs=1, base_lr=1e-2)
    assert len(history) == 2
    after_both = moved(lm, start)
    assert any(".branches.0." in n for n in after_both)  # phase two trains the old part too


def test_the_frozen_phase_moves_only_what_surgery_inserted():
    torch.manual_seed(0)
    lm = nnblocks.build(
        {"name": "transformer_lm", "vocab_size": 30, "dim": 16, "heads": 2, "layers": 1}
    )
    surgery.beside(lm, "decoder.layers.0.self_attention", "mha")
    seqs = torch.randint(3, 30, (64, 9), generator=torch.Generator().manual_seed(0))
    learn = Learner(
        lm, (TensorData(seqs[:, :-1], seqs[:, 1:]), None), "cross_entropy", batch_size=16,
        progress=False, audit="off",
    )  # fmt: skip
    start = snapshot(lm)
    first: set[str] = set()

    class Stop(nnblocks.train.Callback):
        def after_fit(self, learn):
            if not first:
                first.update(moved(learn.model, start))

    learn.add_callbacks(Stop())
    learn.fine_tune(1, freeze_epochs=1, base_lr=1e-2)
    assert first and all(".branches.1." in n or ".gate." in n for n in first)


def test_bad_input_fails_before_training():
    learn = learner(mlp())
    with pytest.raises(TrainingError, match="nothing to train first"):
        learner(nn.Linear(4, 3)).fine_tune(1)
    with pytest.raises(TrainingError, match="nothing to train first"):
        learn.fine_tune(1, new=["*"])
    with pytest.raises(TrainingError, match="`new` pattern 'headz'"):
        learn.fine_tune(1, new=["headz"])
    with pytest.raises(TrainingError, match="epochs"):
        learn.fine_tune(0)
    with pytest.raises(TrainingError, match="lr_mult"):
        learn.fine_tune(1, lr_mult=0)
    with pytest.raises(TrainingError, match="train_bn"):
        learn.fine_tune(1, train_bn="sometimes")
    assert learn.opt is None and all(p.requires_grad for p in learn.model.parameters())


def test_layer_groups_spread_the_rates():
    model = mlp()
    learn = learner(model)
    learn.fine_tune(1, freeze_epochs=0, base_lr=2e-3, lr_mult=100, groups=["layers.1"])
    rates = sorted({g["base_lr"] for g in learn.opt.param_groups})
    assert rates == pytest.approx([1e-5, 1e-4, 1e-3])  # log-spaced: body, layers.1, head
