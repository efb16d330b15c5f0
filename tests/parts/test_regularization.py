"""Regularization parts: identity in eval, unbiased in train, per-sample drop_path."""

import pytest
import torch

import nnblocks
from nnblocks.errors import SpecError
from nnblocks.parts.regularization import drop_path


@pytest.mark.parametrize("name", nnblocks.list_parts("regularization"))
def test_contract_eval_is_identity_and_no_parameters(name):
    part = nnblocks.build({"name": name, "p": 0.5}, "regularization").eval()
    x = torch.randn(4, 3, 5)
    assert part(x) is x
    assert list(part.parameters()) == []
    part.train()
    y = part(x)
    assert y.shape == x.shape and y.dtype == x.dtype


@pytest.mark.parametrize("name", nnblocks.list_parts("regularization"))
def test_zero_p_is_identity_in_train(name):
    part = nnblocks.build({"name": name, "p": 0.0}, "regularization").train()
    x = torch.randn(4, 3)
    assert part(x) is x


@pytest.mark.parametrize("name", ["dropout", "drop_path"])
@pytest.mark.parametrize("p", [-0.1, 1.0, "0.5"])
def test_bad_p(name, p):
    with pytest.raises(SpecError, match=r"`p`.*\[0, 1\)") as info:
        nnblocks.build({"name": name, "p": p}, "regularization", at="model.drop")
    assert "model.drop" in str(info.value)


def test_dropout_zeros_elements_and_rescales():
    part = nnblocks.build({"name": "dropout", "p": 0.25}, "regularization").train()
    y = part(torch.ones(100, 100))
    assert sorted(y.unique().tolist()) == [0.0, pytest.approx(1 / 0.75)]
    # element-wise: rows are not all-or-nothing
    kept = (y != 0).float().mean(1)
    assert ((kept > 0) & (kept < 1)).all()


def test_drop_path_drops_whole_samples():
    part = nnblocks.build({"name": "drop_path", "p": 0.3}, "regularization").train()
    x = torch.randn(400, 3, 4)
    y = part(x)
    dropped = (y == 0).flatten(1).all(1)
    kept = ~dropped
    torch.testing.assert_close(y[kept], x[kept] / 0.7)
    # every sample is either dropped or kept whole, and roughly 30% are dropped
    assert (((y == 0).flatten(1).any(1)) == dropped).all()
    assert 0.2 < dropped.float().mean().item() < 0.4


def test_drop_path_is_unbiased():
    x = torch.ones(20000, 2)
    y = drop_path(x, p=0.5, training=True)
    assert abs(y.mean().item() - 1.0) < 0.05


def test_drop_path_gradient_follows_mask():
    x = torch.randn(64, 5, requires_grad=True)
    y = drop_path(x, p=0.5)
    y.sum().backward()
    dropped = (y == 0).all(1)
    assert (x.grad[dropped] == 0).all()
    torch.testing.assert_close(x.grad[~dropped], torch.full_like(x.grad[~dropped], 2.0))


def test_docstring_examples_run():
    import doctest

    import nnblocks.parts.regularization as module

    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
