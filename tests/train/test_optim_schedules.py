"""Optimizers (fused kernels, groups, discriminative rates) and schedules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nnblocks.errors import TrainingError
from nnblocks.train import (
    OneCycle,
    OneCycleMomentum,
    make_optimizer,
    make_schedule,
    split_groups,
    spread_lr,
)
from nnblocks.train.schedules import Cosine, Exponential, Linear


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))


def test_adamw_uses_a_fast_kernel_and_skips_decay_on_1d() -> None:
    opt = make_optimizer(_model(), "adamw", lr=1e-3, wd=0.1)
    assert opt.defaults.get("fused") or opt.defaults.get("foreach")
    decayed = {p.ndim for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    plain = {p.ndim for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert decayed == {2} and plain == {1}


@pytest.mark.parametrize("wd", [-0.1, float("nan"), float("inf"), "0.01", True])
def test_a_bad_weight_decay_is_refused_before_training(wd: object) -> None:
    # torch checks only its constructor's default, and the decayed group carries its own.
    with pytest.raises(TrainingError, match="weight decay"):
        make_optimizer(_model(), "adamw", lr=1e-3, wd=wd)  # type: ignore[arg-type]
    assert make_optimizer(_model(), "adamw", lr=1e-3, wd=0).param_groups


def test_groups_by_pattern_with_discriminative_rates() -> None:
    model = _model()
    groups = split_groups(model, ["0.*", "1.*"])
    assert [[n for n, _ in g] for g in groups] == [
        ["0.weight", "0.bias"],
        ["1.weight", "1.bias"],
        ["2.weight", "2.bias"],
    ]
    opt = make_optimizer(model, "sgd", lr=slice(1e-4, 1e-2), param_groups=["0.*", "1.*"])
    by_group = {g["group"]: g["lr"] for g in opt.param_groups}
    assert (
        by_group[0] == pytest.approx(1e-4)
        and by_group[1] == pytest.approx(1e-3)
        and by_group[2] == pytest.approx(1e-2)
    )
    with pytest.raises(TrainingError, match="matches no parameter"):
        split_groups(model, ["encoder.*"])


def test_spread_lr_forms() -> None:
    assert spread_lr(0.1, 2) == [0.1, 0.1]
    assert spread_lr(slice(1.0), 3) == [0.1, 0.1, 1.0]
    assert spread_lr([1, 2], 2) == [1.0, 2.0]
    with pytest.raises(TrainingError, match="one per group"):
        spread_lr([1, 2], 3)
    with pytest.raises(TrainingError, match="positive"):
        spread_lr(-1.0, 1)


def test_group_function_and_ready_optimizer() -> None:
    model = _model()
    groups = split_groups(model, lambda m: [m[0], m[2]])
    assert len(groups) == 3  # the LayerNorm's parameters form the rest group
    ready = torch.optim.SGD(model.parameters(), lr=0.5)
    assert make_optimizer(model, ready) is ready and ready.param_groups[0]["base_lr"] == 0.5


def test_one_cycle_shape() -> None:
    s = OneCycle(pct_start=0.25, div=25.0, final_div=1e4)
    assert s(0.0) == pytest.approx(1 / 25)
    assert s(0.25) == pytest.approx(1.0)
    assert s(1.0) == pytest.approx(1 / (25 * 1e4))
    values = [s(i / 100) for i in range(101)]
    peak = values.index(max(values))
    assert all(a <= b for a, b in zip(values[:peak], values[1 : peak + 1]))
    assert all(a >= b for a, b in zip(values[peak:], values[peak + 1 :]))
    m = OneCycleMomentum(0.25, 0.95, 0.85)
    assert (
        m(0.0) == pytest.approx(0.95)
        and m(0.25) == pytest.approx(0.85)
        and m(1.0) == pytest.approx(0.95)
    )


def test_other_schedules_and_make_schedule() -> None:
    assert Linear(1.0, 0.0)(0.5) == 0.5
    assert Cosine(1.0, 0.0)(0.5) == pytest.approx(0.5)
    assert Cosine(1.0, 0.0, warmup=0.1)(0.05) == pytest.approx(0.5)
    assert Exponential(1.0, 0.01)(0.5) == pytest.approx(0.1)
    assert isinstance(make_schedule({"name": "cosine", "warmup": 0.1}), Cosine)
    assert make_schedule(lambda p: 1 - p)(0.25) == 0.75
    assert make_schedule("one-cycle").config()["name"] == "OneCycle"
    with pytest.raises(TrainingError, match="unknown schedule"):
        make_schedule("cosinus")
    assert math.isclose(OneCycle()(0.625), 0.5 * (1 + 1 / 250000), rel_tol=1e-6)
