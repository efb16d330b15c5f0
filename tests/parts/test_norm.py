"""Norm parts: the contract over every registered one, and each against its definition."""

import pytest
import torch
from torch import nn

import nnblocks
from nnblocks.errors import ShapeError, SpecError

D = 6


@pytest.mark.parametrize("name", nnblocks.list_parts("norm"))
@pytest.mark.parametrize("shape", [(4, D), (2, 3, D)])
def test_contract_last_axis(name, shape):
    norm = nnblocks.build(name, "norm", dim=D)
    x = torch.randn(*shape, dtype=torch.float64)
    norm.to(torch.float64)
    y = norm(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()
    assert nnblocks.kind_of(norm) == "norm"


@pytest.mark.parametrize("name", nnblocks.list_parts("norm"))
def test_channels_first_equals_channels_last(name):
    last = nnblocks.build(name, "norm", dim=D)
    first = nnblocks.build({"name": name, "channels_first": True}, "norm", dim=D)
    with torch.no_grad():
        for p in last.parameters():
            p.normal_()
        first.load_state_dict(last.state_dict())
    x = torch.randn(2, D, 3, 4)  # [B, C, H, W]
    expected = last(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(first(x), expected)


@pytest.mark.parametrize("name", ["layer", "rms", "batch"])
def test_wrong_width_names_part_and_slot(name):
    norm = nnblocks.build(name, "norm", dim=D, at="model.encoder.norm")
    with pytest.raises(ShapeError, match=rf"norm part `{name}` at `model.encoder.norm`.*\(2, 5\)"):
        norm(torch.randn(2, 5))
    first = nnblocks.build({"name": name, "channels_first": True}, "norm", dim=D)
    with pytest.raises(ShapeError, match=r"axis 1"):
        first(torch.randn(2, 3, D))


@pytest.mark.parametrize("spec", [{"name": "layer", "eps": -1.0}, {"name": "rms", "eps": "x"}])
def test_bad_options_raise_spec_error(spec):
    with pytest.raises(SpecError, match="eps"):
        nnblocks.build(spec, "norm", dim=D, at="slot")


def test_bad_dim_raises_spec_error():
    with pytest.raises(SpecError, match=r"dim.*Received: dim=0"):
        nnblocks.build("layer", "norm", dim=0)


def test_layer_matches_torch_layernorm():
    x = torch.randn(3, 4, D)
    ours = nnblocks.build("layer", "norm", dim=D)
    ref = nn.LayerNorm(D)
    with torch.no_grad():
        ref.weight.normal_()
        ref.bias.normal_()
    ours.load_state_dict(ref.state_dict())
    torch.testing.assert_close(ours(x), ref(x))


def test_layer_without_bias():
    norm = nnblocks.build({"name": "layer", "bias": False}, "norm", dim=D)
    assert [n for n, _ in norm.named_parameters()] == ["weight"]
    y = norm(torch.randn(5, D) * 4 + 2)
    torch.testing.assert_close(y.mean(-1), torch.zeros(5), atol=1e-5, rtol=0)


def test_rms_definition():
    # Zhang & Sennrich 2019: x / sqrt(mean(x^2) + eps) * g, no centring.
    x = torch.randn(3, 4, D, dtype=torch.float64) + 1.5
    norm = nnblocks.build({"name": "rms", "eps": 1e-6}, "norm", dim=D).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), expected)


def test_batch_matches_torch_batchnorm1d_on_sequences():
    # [B, T, D]: statistics over batch and time, like BatchNorm1d on [B, D, T].
    x = torch.randn(4, 5, D) * 2 + 1
    ours = nnblocks.build("batch", "norm", dim=D)
    ref = nn.BatchNorm1d(D)
    ours.load_state_dict(ref.state_dict())
    for _ in range(3):  # train steps update running statistics identically
        torch.testing.assert_close(ours(x), ref(x.transpose(1, 2)).transpose(1, 2))
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    assert int(ours.num_batches_tracked) == 3
    ours.eval()
    ref.eval()
    y = torch.randn(2, 3, D)
    torch.testing.assert_close(ours(y), ref(y.transpose(1, 2)).transpose(1, 2))


def test_batch_matches_torch_on_images_and_vectors():
    img = torch.randn(4, D, 3, 3)
    ours = nnblocks.build({"name": "batch", "channels_first": True}, "norm", dim=D)
    ref = nn.BatchNorm2d(D)
    torch.testing.assert_close(ours(img), ref(img))
    torch.testing.assert_close(ours.running_var, ref.running_var)

    vec = torch.randn(8, D)
    ours1 = nnblocks.build("batch", "norm", dim=D)
    ref1 = nn.BatchNorm1d(D, momentum=None)
    ours1.momentum = None  # cumulative average, as torch
    for _ in range(2):
        torch.testing.assert_close(ours1(vec), ref1(vec))
    torch.testing.assert_close(ours1.running_mean, ref1.running_mean)


def test_batch_eval_uses_running_statistics_and_does_not_update():
    norm = nnblocks.build("batch", "norm", dim=D).eval()
    before = norm.running_mean.clone()
    x = torch.randn(3, D) * 5 + 3
    # Fresh running stats are mean 0, var 1: eval is (almost) the identity.
    torch.testing.assert_close(norm(x), x / torch.sqrt(torch.tensor(1 + 1e-5)))
    torch.testing.assert_close(norm.running_mean, before)


def test_batch_single_value_per_feature_in_training():
    norm = nnblocks.build("batch", "norm", dim=D, at="m.bn")
    with pytest.raises(ShapeError, match="more than one value per feature"):
        norm(torch.randn(1, D))
    norm.eval()
    assert norm(torch.randn(1, D)).shape == (1, D)


def test_batch_without_running_statistics():
    norm = nnblocks.build({"name": "batch", "track_running_stats": False}, "norm", dim=D).eval()
    assert list(norm.buffers()) == []
    x = torch.randn(16, D) * 3 + 2
    torch.testing.assert_close(norm(x).mean(0), torch.zeros(D), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["layer", "rms", "batch"])
def test_gradients_flow(name):
    norm = nnblocks.build(name, "norm", dim=D)
    x = torch.randn(4, 3, D, requires_grad=True)
    (norm(x) * torch.randn(4, 3, D)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert norm.weight.grad is not None


def test_docstring_examples_run():
    import doctest

    import nnblocks.parts.norm as module

    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
