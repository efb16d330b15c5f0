"""Part options that imported pretrained models need pass their kind's contract."""

from __future__ import annotations

import pytest
import torch

import nnblocks
from nnblocks.check import check_part
from nnblocks.errors import DataError, ShapeError, SpecError

LLAMA3 = {"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 8}  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "spec"),
    [
        ("attention", {"name": "gqa", "kv_heads": 2, "head_dim": 12}),
        ("attention", {"name": "gqa", "kv_heads": 2, "bias": True, "out_bias": False}),
        ("attention", {"name": "local", "window": 3, "head_dim": 6}),
        ("attention", {"name": "gqa", "position": {"name": "rotary", "scaling": LLAMA3}}),
        ("position", {"name": "rotary", "scaling": {"type": "linear", "factor": 4.0}}),
        ("position", {"name": "rotary", "scaling": LLAMA3}),
        ("embedding", {"name": "token", "type_vocab_size": 2}),
    ],
)
def test_contract_kit_passes(kind, spec):
    report = check_part(kind, spec)
    assert report.ok, str(report)


def test_head_dim_sets_projection_widths():
    attn = nnblocks.build({"name": "gqa", "kv_heads": 2, "head_dim": 12, "out_bias": False},
                          "attention", dim=32, heads=4)  # fmt: skip
    assert attn.q_proj.weight.shape == (48, 32) and attn.k_proj.weight.shape == (24, 32)
    assert attn.out_proj.bias is None and attn.q_proj.bias is not None
    assert attn(torch.randn(2, 5, 32), causal=True).shape == (2, 5, 32)


def test_rotary_scaling_changes_only_what_it_should():
    plain = nnblocks.build("rotary", "position", dim=16)
    linear = nnblocks.build({"name": "rotary", "scaling": {"type": "linear", "factor": 2.0}},
                            "position", dim=16)  # fmt: skip
    q = torch.randn(1, 1, 4, 16)
    pos = torch.arange(4)
    # linear scaling at position 2p is the plain rotation at position p
    assert torch.allclose(linear.adjust(q, q, 2 * pos, pos)[0], plain.adjust(q, q, pos, pos)[0],
                          atol=1e-6)  # fmt: skip
    # Llama 3.1's own values: wavelengths under 8192/4 are kept, over 8192/1 divided by 8
    llama31 = {**LLAMA3, "original_max_position_embeddings": 8192}
    llama3 = nnblocks.build({"name": "rotary", "scaling": llama31}, "position", dim=16)
    rates, base = llama3._rates(q.device, torch.float32), plain._rates(q.device, torch.float32)
    assert rates[0] == base[0]  # the highest frequency is kept
    assert torch.isclose(rates[-1], base[-1] / 8)  # the lowest is divided by the factor


@pytest.mark.parametrize(
    ("scaling", "message"),
    [
        ({"type": "yarn", "factor": 2.0}, "linear, llama3"),
        ({"type": "linear"}, "scaling.factor"),
        ({"type": "linear", "factor": 2.0, "beta": 1}, "only the keys"),
        ({**LLAMA3, "high_freq_factor": 0.5}, "above low_freq_factor"),
    ],
)
def test_rotary_scaling_errors(scaling, message):
    with pytest.raises(SpecError, match=message):
        nnblocks.build({"name": "rotary", "scaling": scaling}, "position", dim=16)


def test_absolute_positions_per_token():
    pos = nnblocks.build("learned", "position", dim=8, max_len=16)
    x = torch.zeros(2, 3, 8)
    positions = torch.tensor([[0, 1, 2], [0, 0, 1]])
    out = pos(x, positions=positions)
    assert torch.equal(out[0], pos(x[:1])[0])
    assert torch.equal(out[1, 1:], pos(x[:1, :2])[0])
    with pytest.raises(ShapeError, match="max_len=16"):
        pos(x, positions=positions + 15)
    with pytest.raises(ShapeError, match="expected `positions`"):
        pos(x, positions=positions[:, :2])


def test_token_types():
    emb = nnblocks.build({"name": "token", "type_vocab_size": 2}, "embedding", dim=8, vocab_size=10)
    ids = torch.tensor([[1, 2, 3]])
    zeros = emb(ids, token_type_ids=torch.zeros_like(ids))
    assert torch.equal(emb(ids), zeros)  # type 0 when none are given, as in BERT
    assert not torch.equal(emb(ids, token_type_ids=torch.ones_like(ids)), zeros)
    with pytest.raises(DataError, match="type_vocab_size=2"):
        emb(ids, token_type_ids=torch.full_like(ids, 2))
    plain = nnblocks.build("token", "embedding", dim=8, vocab_size=10)
    with pytest.raises(ShapeError, match="no token types"):
        plain(ids, token_type_ids=ids)


def test_heads_activation_and_norm():
    pooler = nnblocks.build({"name": "linear", "activation": "tanh"}, "head", dim=8, out_features=8)
    x = torch.randn(2, 8)
    assert torch.allclose(pooler(x), torch.tanh(x @ pooler.weight.T + pooler.bias))
    mlm = nnblocks.build({"name": "mlp", "activation": "gelu", "norm": "layer"}, "head",
                         dim=8, out_features=10)  # fmt: skip
    assert mlm.norm is not None and mlm(x).shape == (2, 10)
