"""Feedforward parts: the contract over every registered one, and each against its formula."""

import pytest
import torch
import torch.nn.functional as F

import nnblocks
from nnblocks.errors import RegistryError, ShapeError, SpecError
from nnblocks.parts.feedforward import gated_hidden

D = 12


@pytest.mark.parametrize("name", nnblocks.list_parts("feedforward"))
def test_contract(name):
    ff = nnblocks.build(name, "feedforward", dim=D).double()
    x = torch.randn(2, 5, D, dtype=torch.float64, requires_grad=True)
    y = ff(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert nnblocks.kind_of(ff) == "feedforward"
    rebuilt = nnblocks.build(nnblocks.spec_of(ff), "feedforward")
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in ff.parameters())


@pytest.mark.parametrize("name", nnblocks.list_parts("feedforward"))
def test_wrong_width_names_part_and_slot(name):
    ff = nnblocks.build(name, "feedforward", dim=D, at="model.layers.0.feedforward")
    with pytest.raises(ShapeError, match=rf"`{name}` at `model.layers.0.feedforward`.*\(2, 3, 7\)"):
        ff(torch.randn(2, 3, 7))


@pytest.mark.parametrize("name", ["mlp", "swiglu", "geglu"])
@pytest.mark.parametrize("bias", [True, False])
def test_bias_option(name, bias):
    ff = nnblocks.build({"name": name, "bias": bias}, "feedforward", dim=D)
    has_bias = any(n.endswith("bias") for n, _ in ff.named_parameters())
    assert has_bias == bias


def test_mlp_formula_and_default_width():
    ff = nnblocks.build({"name": "mlp", "activation": "relu"}, "feedforward", dim=D)
    assert ff.hidden == 4 * D
    x = torch.randn(3, 4, D)
    expected = F.linear(F.relu(F.linear(x, ff.up.weight, ff.up.bias)), ff.down.weight, ff.down.bias)
    torch.testing.assert_close(ff(x), expected)


def test_mlp_accepts_activation_spec_dict_and_class():
    x = torch.randn(2, 3, D)
    tanh_gelu = nnblocks.build(
        {"name": "mlp", "activation": {"name": "gelu", "approximate": "tanh"}}, "feedforward", dim=D
    )
    h = F.gelu(tanh_gelu.up(x), approximate="tanh")
    torch.testing.assert_close(tanh_gelu(x), tanh_gelu.down(h))
    with_class = nnblocks.build({"name": "mlp", "activation": torch.nn.Tanh}, "feedforward", dim=D)
    torch.testing.assert_close(with_class(x), with_class.down(torch.tanh(with_class.up(x))))


def test_unknown_activation_names_its_slot():
    with pytest.raises(RegistryError, match=r"model\.ff\.activation.*Did you mean `relu`"):
        nnblocks.build({"name": "mlp", "activation": "rleu"}, "feedforward", dim=D, at="model.ff")


@pytest.mark.parametrize("name, act", [("swiglu", F.silu), ("geglu", F.gelu)])
def test_gated_formula(name, act):
    # Shazeer 2020: FFN(x) = (act(x W) * x V) W2; here W and V are halves of one fused matmul.
    ff = nnblocks.build(name, "feedforward", dim=D)
    x = torch.randn(2, 3, D)
    w, v = ff.up.weight.chunk(2, dim=0)
    bw, bv = ff.up.bias.chunk(2)
    expected = ff.down(act(F.linear(x, w, bw)) * F.linear(x, v, bv))
    torch.testing.assert_close(ff(x), expected)


@pytest.mark.parametrize("dim", [3, 12, 64, 512])
def test_gated_default_width_matches_mlp_parameters(dim):
    hidden = gated_hidden(dim)
    assert hidden % 8 == 0
    assert hidden >= 8 * dim / 3
    assert hidden - 8 < 8 * dim / 3  # the smallest multiple of 8 at or above 8/3 * dim
    gated = nnblocks.build({"name": "swiglu", "bias": False}, "feedforward", dim=dim)
    plain = nnblocks.build({"name": "mlp", "bias": False}, "feedforward", dim=dim)
    n_gated = sum(p.numel() for p in gated.parameters())
    n_plain = sum(p.numel() for p in plain.parameters())
    assert abs(n_gated - n_plain) <= 3 * 8 * dim  # equal up to the rounding of hidden


def test_explicit_hidden_and_activation_override():
    ff = nnblocks.build(
        {"name": "swiglu", "hidden": 10, "activation": "relu"}, "feedforward", dim=D
    )
    assert ff.up.out_features == 20 and ff.down.in_features == 10
    x = torch.randn(2, D)
    gate, value = ff.up(x).chunk(2, dim=-1)
    torch.testing.assert_close(ff(x), ff.down(F.relu(gate) * value))


def test_dropout_on_hidden_in_train_only():
    ff = nnblocks.build({"name": "mlp", "dropout": 0.5}, "feedforward", dim=D)
    x = torch.randn(4, 6, D)
    ff.eval()
    torch.testing.assert_close(ff(x), ff(x))
    ff.train()
    assert not torch.allclose(ff(x), ff(x))


@pytest.mark.parametrize(
    "options, word",
    [({"hidden": 0}, "hidden"), ({"dropout": 1.0}, "dropout"), ({"hidden": 2.5}, "hidden")],
)
def test_bad_options(options, word):
    with pytest.raises(SpecError, match=rf"`{word}`") as info:
        nnblocks.build({"name": "mlp", **options}, "feedforward", dim=D, at="m.ff")
    assert "m.ff" in str(info.value)


def test_docstring_examples_run():
    import doctest

    import nnblocks.parts.feedforward as module

    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
