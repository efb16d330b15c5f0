"""Embedding parts: lookup, padding, scaling, tying and the errors for bad ids."""

import math

import pytest
import torch
import torch.nn.functional as F

import nnblocks
from nnblocks.errors import DataError, ShapeError, SpecError

D, V = 8, 11


@pytest.mark.parametrize("name", nnblocks.list_parts("embedding"))
def test_contract(name):
    emb = nnblocks.build(name, "embedding", dim=D, vocab_size=V)
    ids = torch.randint(0, V, (2, 5))
    y = emb(ids)
    assert y.shape == (2, 5, D) and y.dtype == emb.weight.dtype
    assert emb.weight.shape == (V, D)
    assert nnblocks.kind_of(emb) == "embedding"


def test_lookup_and_int32_ids():
    emb = nnblocks.build("token", "embedding", dim=D, vocab_size=V)
    ids = torch.tensor([[3, 0, 10]])
    torch.testing.assert_close(emb(ids), emb.weight[ids])
    torch.testing.assert_close(emb(ids.int()), emb.weight[ids])


def test_scale_multiplies_by_sqrt_dim():
    plain = nnblocks.build("token", "embedding", dim=D, vocab_size=V)
    scaled = nnblocks.build({"name": "token", "scale": True}, "embedding", dim=D, vocab_size=V)
    scaled.load_state_dict(plain.state_dict())
    ids = torch.randint(0, V, (3, 4))
    torch.testing.assert_close(scaled(ids), plain(ids) * math.sqrt(D))


def test_init_scale():
    emb = nnblocks.build("token", "embedding", dim=64, vocab_size=500)
    std = emb.weight.std().item()
    assert abs(std - 64**-0.5) < 0.1 * 64**-0.5


@pytest.mark.parametrize("padding_idx, row", [(0, 0), (-1, V - 1)])
def test_padding_row_zero_and_frozen(padding_idx, row):
    emb = nnblocks.build("token", "embedding", dim=D, vocab_size=V, padding_idx=padding_idx)
    assert emb.padding_idx == row
    assert (emb.weight[row] == 0).all()
    ids = torch.tensor([[row, 1, row, 2]])
    emb(ids).pow(2).sum().backward()
    assert (emb.weight.grad[row] == 0).all()
    assert (emb.weight.grad[1] != 0).any()


def test_weight_tying():
    emb = nnblocks.build("token", "embedding", dim=D, vocab_size=V)
    head = torch.nn.Linear(D, V, bias=False)
    head.weight = emb.weight
    ids = torch.randint(0, V, (2, 3))
    logits = head(emb(ids))  # [B, T, V]
    logits.sum().backward()
    assert head.weight is emb.weight
    assert emb.weight.grad is not None
    torch.testing.assert_close(logits, F.linear(emb.weight[ids], emb.weight))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool])
def test_non_integer_ids_raise_shape_error(dtype):
    emb = nnblocks.build("token", "embedding", dim=D, vocab_size=V, at="model.embedding")
    with pytest.raises(ShapeError, match=rf"`token` at `model.embedding`.*integer.*{dtype}"):
        emb(torch.tensor([[1, 0]], dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16])
def test_narrow_integer_ids_are_widened(dtype):
    emb = nnblocks.build("token", "embedding", dim=D, vocab_size=V)
    ids = torch.tensor([[3, 7]])
    torch.testing.assert_close(emb(ids.to(dtype)), emb(ids))


@pytest.mark.parametrize("bad", [V, 100, -1])
def test_out_of_range_ids_raise_data_error(bad):
    emb = nnblocks.build("token", "embedding", dim=D, vocab_size=V, at="model.embedding")
    with pytest.raises(
        DataError, match=rf"model.embedding.*vocab_size={V}.*Received: ids from"
    ) as e:
        emb(torch.tensor([[1, bad, 2]]))
    assert str(bad) in str(e.value)


def test_range_error_also_without_check_ids_on_cpu():
    # On CPU the translation of torch's index error is free, so it always happens.
    emb = nnblocks.build({"name": "token", "check_ids": False}, "embedding", dim=D, vocab_size=V)
    with pytest.raises(DataError):
        emb(torch.tensor([V]))


def test_empty_ids():
    emb = nnblocks.build("token", "embedding", dim=D, vocab_size=V)
    assert emb(torch.zeros(2, 0, dtype=torch.long)).shape == (2, 0, D)


@pytest.mark.parametrize(
    "options, word",
    [
        ({"vocab_size": 0}, "vocab_size"),
        ({"dim": -2}, "dim"),
        ({"padding_idx": V}, "padding_idx"),
        ({"padding_idx": -V - 1}, "padding_idx"),
    ],
)
def test_bad_options(options, word):
    kwargs = {"dim": D, "vocab_size": V, **options}
    with pytest.raises(SpecError, match=rf"`{word}`"):
        nnblocks.build({"name": "token", **kwargs}, "embedding")


def test_missing_vocab_size_names_accepted_arguments():
    with pytest.raises(
        SpecError, match=r"missing required argument `vocab_size`.*padding_idx=None"
    ):
        nnblocks.build("token", "embedding", dim=D, at="model.embedding")


def test_docstring_examples_run():
    import doctest

    import nnblocks.parts.embedding as module

    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
