"""Activation parts: the contract over every registered one, and each against torch."""

import pytest
import torch
import torch.nn.functional as F

import nnblocks
from nnblocks.errors import SpecError

REFERENCE = {
    "relu": F.relu,
    "gelu": F.gelu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "identity": lambda x: x,
    "leaky_relu": F.leaky_relu,
    "mish": F.mish,
}


@pytest.mark.parametrize("name", nnblocks.list_parts("activation"))
def test_contract_shape_dtype_and_no_parameters(name):
    act = nnblocks.build(name, "activation")
    x = torch.randn(2, 3, 5, dtype=torch.float64)
    y = act(x)
    assert y.shape == x.shape
    assert y.dtype == x.dtype
    assert list(act.parameters()) == []
    assert nnblocks.kind_of(act) == "activation"
    rebuilt = nnblocks.build(nnblocks.spec_of(act), "activation")
    torch.testing.assert_close(rebuilt(x), y)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_matches_torch(name):
    x = torch.randn(4, 7) * 3
    torch.testing.assert_close(nnblocks.build(name, "activation")(x), REFERENCE[name](x))


def test_builtins_present():
    assert set(REFERENCE) <= set(nnblocks.list_parts("activation"))


def test_gelu_tanh_approximation():
    x = torch.linspace(-4, 4, 101)
    act = nnblocks.build({"name": "gelu", "approximate": "tanh"}, "activation")
    torch.testing.assert_close(act(x), F.gelu(x, approximate="tanh"))
    assert not torch.allclose(act(x), F.gelu(x), atol=1e-6, rtol=0)


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(SpecError, match=r"approximate.*Received: approximate='fast'") as info:
        nnblocks.build({"name": "gelu", "approximate": "fast"}, "activation", at="model.act")
    assert "model.act" in str(info.value)


def test_leaky_relu_slope():
    act = nnblocks.build({"name": "leaky_relu", "negative_slope": 0.2}, "activation")
    assert act(torch.tensor([-1.0, 2.0])).tolist() == pytest.approx([-0.2, 2.0])


def test_activation_ignores_offered_dim():
    # A slot may offer defaults the part does not take; they are not passed.
    act = nnblocks.build("relu", "activation", dim=8)
    assert nnblocks.spec_of(act) == {"name": "relu"}


def test_docstring_examples_run():
    import doctest

    import nnblocks.parts.activation as module

    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
