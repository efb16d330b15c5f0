"""The norm policy of freeze(train_bn=...) for every registered norm (new norms are covered)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nnblocks
from nnblocks.data import TensorData
from nnblocks.train import Learner, freeze, unfreeze
from nnblocks.train.freeze import has_batch_stats

D = 6


def net(norm_name: str) -> nn.Module:
    torch.manual_seed(0)
    body = nn.Sequential(nn.Linear(4, D), nnblocks.build(norm_name, "norm", dim=D), nn.ReLU())
    return nn.Sequential(body, nn.Linear(D, 3))


def fit_once(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 4, generator=g) * 3 + 1, torch.randint(0, 3, (48,), generator=g)
    learn = Learner(
        model, (TensorData(x, y), None), "cross_entropy", batch_size=16, progress=False,
        audit="off",
    )  # fmt: skip
    learn.fit(1, lr=1e-2)


def state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("norm_name", nnblocks.list_parts("norm"))
@pytest.mark.parametrize("policy", ["affine", "stats", "eval"])
def test_every_registered_norm_follows_the_policy(norm_name: str, policy: str) -> None:
    model = net(norm_name)
    norm = model[0][1]
    batch_stats = has_batch_stats(norm)
    assert batch_stats == any(b.startswith("running_") for b, _ in norm.named_buffers()) or (
        isinstance(getattr(norm, "track_running_stats", None), bool)
    )
    freeze(model, "0", train_bn=policy)
    before = state(norm)
    fit_once(model)
    after = state(norm)
    params = {n for n, _ in norm.named_parameters()}
    buffers = {n for n, b in norm.named_buffers() if b.is_floating_point()}
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    if not batch_stats:  # layer / rms norms freeze like any other module
        assert not changed
        return
    assert (params & changed == params) == (policy == "affine"), changed
    assert (buffers <= changed) == (policy != "eval"), changed
    unfreeze(model)
    fit_once(model)
    assert all(p.requires_grad for p in model.parameters())


def test_nnblocks_batch_norm_is_recognised_like_torchs() -> None:
    ours = nnblocks.build("batch", "norm", dim=D)
    assert has_batch_stats(ours) and has_batch_stats(nn.BatchNorm1d(D))
    assert has_batch_stats(nn.InstanceNorm1d(D))  # track_running_stats=False, still batch-like
    assert not has_batch_stats(nn.LayerNorm(D)) and not has_batch_stats(nn.Linear(D, D))


def test_a_new_norm_with_running_statistics_is_covered_without_a_class_list() -> None:
    class MyRunningNorm(nn.Module):
        def __init__(self, dim: int) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(dim))
            self.register_buffer("running_rms", torch.ones(dim))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.training:
                with torch.no_grad():
                    self.running_rms.lerp_(x.pow(2).mean(0).sqrt(), 0.1)
            return self.scale * x / self.running_rms

    model = nn.Sequential(nn.Sequential(nn.Linear(4, D), MyRunningNorm(D)), nn.Linear(D, 3))
    freeze(model, "0", train_bn=False)
    before = model[0][1].running_rms.clone()
    fit_once(model)
    assert torch.equal(model[0][1].running_rms, before)
