"""from_torch: torch's transformer modules as nnblocks parts with equal outputs."""

from __future__ import annotations

import doctest

import pytest
import torch
from torch import nn

import nnblocks
from nnblocks.errors import NNBlocksError, ShapeError
from nnblocks.interop import convert_masks, from_torch

D, H, F = 16, 4, 24


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _padding(b: int, t: int) -> torch.Tensor:
    pad = torch.zeros(b, t, dtype=torch.bool)
    pad[0, -2:] = True  # torch: True = padding (blocked)
    return pad


def test_multihead_attention_matches_with_padding_and_a_causal_mask():
    mha = nn.MultiheadAttention(D, H, batch_first=True).eval()
    part = from_torch(mha)
    assert nnblocks.spec_of(part)["name"] == "mha" and nnblocks.kind_of(part) == "attention"
    x, ctx = torch.randn(2, 5, D), torch.randn(2, 7, D)
    pad = _padding(2, 7)
    ref, _ = mha(x, ctx, ctx, key_padding_mask=pad)
    out = part(x, context=ctx, mask=convert_masks(key_padding_mask=pad))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    causal = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
    ref, _ = mha(x, x, x, attn_mask=causal)
    torch.testing.assert_close(part(x, mask=convert_masks(causal)), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(part(x, causal=True), ref, rtol=1e-5, atol=1e-5)


def test_sequence_first_attention_matches_once_transposed():
    mha = nn.MultiheadAttention(D, H).eval()  # batch_first=False: torch takes [T, B, D]
    part = from_torch(mha)
    x = torch.randn(5, 2, D)
    ref, _ = mha(x, x, x)
    torch.testing.assert_close(part(x.transpose(0, 1)).transpose(0, 1), ref, rtol=1e-5, atol=1e-5)


def test_float_masks_and_3d_masks_convert():
    mha = nn.MultiheadAttention(D, H, batch_first=True, bias=False).eval()
    part = from_torch(mha)
    x = torch.randn(2, 5, D)
    blocked = torch.rand(2 * H, 5, 5) > 0.6
    blocked[..., 0] = False  # every row keeps a key
    additive = torch.zeros(5, 5).masked_fill(
        torch.triu(torch.ones(5, 5, dtype=torch.bool), 1), -torch.inf
    )
    for torch_mask, ours in (
        (blocked, convert_masks(blocked, heads=H)),
        (additive, convert_masks(additive)),
    ):
        ref, _ = mha(x, x, x, attn_mask=torch_mask)
        torch.testing.assert_close(part(x, mask=ours), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ShapeError, match="additive bias"):
        convert_masks(torch.randn(5, 5))


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu", nn.GELU(approximate="tanh")])
def test_encoder_layer_matches(norm_first, activation):
    layer = nn.TransformerEncoderLayer(
        D, H, F, dropout=0.1, activation=activation, batch_first=True, norm_first=norm_first
    ).eval()
    block = from_torch(layer)
    assert nnblocks.kind_of(block) == "block" and not block.training
    x, pad = torch.randn(3, 6, D), _padding(3, 6)
    ref = layer(x, src_key_padding_mask=pad)
    out = block(x, mask=convert_masks(key_padding_mask=pad))
    torch.testing.assert_close(out[1:], ref[1:], rtol=1e-5, atol=1e-5)
    # torch's fast path returns zeros at padded positions; the real tokens must agree.
    torch.testing.assert_close(out[0, :-2], ref[0, :-2], rtol=1e-5, atol=1e-5)


def test_decoder_layer_matches_with_causal_and_memory_masks():
    layer = nn.TransformerDecoderLayer(D, H, F, batch_first=True).eval()
    block = from_torch(layer)
    x, memory = torch.randn(2, 5, D), torch.randn(2, 7, D)
    mem_pad = _padding(2, 7)
    causal = nn.Transformer.generate_square_subsequent_mask(5)  # float -inf above the diagonal
    ref = layer(x, memory, tgt_mask=causal, memory_key_padding_mask=mem_pad)
    out = block(
        x,
        context=memory,
        mask=convert_masks(causal),
        context_mask=convert_masks(key_padding_mask=mem_pad),
    )
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_encoder_stack_matches_and_saves(tmp_path):
    torch_encoder = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(D, H, F, batch_first=True),
        2,
        norm=nn.LayerNorm(D),
        enable_nested_tensor=False,
    ).eval()
    model = from_torch(torch_encoder)
    x = torch.randn(2, 6, D)
    torch.testing.assert_close(model(x), torch_encoder(x), rtol=1e-5, atol=1e-5)
    loaded = nnblocks.load(nnblocks.save(model, tmp_path))
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert "layers.1.self_attention" in dict(loaded.named_modules())


def test_transformer_matches():
    torch_model = nn.Transformer(D, H, 2, 1, F, batch_first=True).eval()
    model = from_torch(torch_model)
    src, tgt = torch.randn(2, 7, D), torch.randn(2, 5, D)
    src_pad = _padding(2, 7)
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    ref = torch_model(
        src, tgt, tgt_mask=causal, src_key_padding_mask=src_pad, memory_key_padding_mask=src_pad
    )
    keep = convert_masks(key_padding_mask=src_pad)
    out = model(src, tgt, src_mask=keep, memory_mask=keep, causal=True)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "module, option",
    [
        (nn.MultiheadAttention(D, H, kdim=8, vdim=8), "kdim/vdim"),
        (nn.MultiheadAttention(D, H, add_bias_kv=True), "add_bias_kv"),
        (nn.TransformerEncoderLayer(D, H, F, activation=torch.tanh), "activation"),
        (nn.Linear(D, D), "does not convert Linear"),
    ],
)
def test_unsupported_options_are_named(module, option):
    with pytest.raises(NNBlocksError, match=option):
        from_torch(module)


def test_docstring_example_runs():
    import nnblocks.interop.torch_nn as module

    result = doctest.testmod(module, extraglobs={"nnblocks": nnblocks})
    assert result.attempted > 0 and result.failed == 0
