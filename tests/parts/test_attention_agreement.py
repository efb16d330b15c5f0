"""Attention parts agree with references: torch.nn.MultiheadAttention, each other, formulas.

Weights are copied across, so any disagreement is a bug in how heads, masks, scales or
positions are handled, not a difference of initialisation.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nnblocks

D, H = 16, 4


def build(spec, heads=H):
    return nnblocks.build(spec, "attention", dim=D, heads=heads).eval()


def copied_into_torch(part):
    """A torch.nn.MultiheadAttention holding the weights of our `mha`."""
    ref = nn.MultiheadAttention(D, H, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(
            torch.cat([part.q_proj.weight, part.k_proj.weight, part.v_proj.weight])
        )
        ref.in_proj_bias.copy_(torch.cat([part.q_proj.bias, part.k_proj.bias, part.v_proj.bias]))
        ref.out_proj.weight.copy_(part.out_proj.weight)
        ref.out_proj.bias.copy_(part.out_proj.bias)
    return ref


def padding_mask(batch=2, length=7):
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[0, -2:] = False
    mask[1, 1] = False
    return mask


# -- torch.nn.MultiheadAttention -------------------------------------------------------------


def test_mha_matches_torch_without_mask():
    part = build("mha")
    ref = copied_into_torch(part)
    x = torch.randn(2, 7, D)
    expected, _ = ref(x, x, x, need_weights=False)
    torch.testing.assert_close(part(x), expected, atol=1e-5, rtol=1e-5)


def test_mha_matches_torch_with_padding_mask():
    part = build("mha")
    ref = copied_into_torch(part)
    x, mask = torch.randn(2, 7, D), padding_mask()
    # torch's key_padding_mask is True = blocked: the opposite of ours.
    expected, expected_weights = ref(x, x, x, key_padding_mask=~mask, average_attn_weights=False)
    out, weights = part(x, mask=mask, need_weights=True)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, expected_weights, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(part(x, mask=mask), expected, atol=1e-5, rtol=1e-5)


def test_mha_matches_torch_with_causal_mask():
    part = build("mha")
    ref = copied_into_torch(part)
    x = torch.randn(2, 7, D)
    blocked = ~torch.ones(7, 7, dtype=torch.bool).tril()  # torch: True = may not attend
    expected, _ = ref(x, x, x, attn_mask=blocked, need_weights=False)
    torch.testing.assert_close(part(x, causal=True), expected, atol=1e-5, rtol=1e-5)
    expected, _ = ref(x, x, x, attn_mask=blocked, key_padding_mask=~padding_mask())
    torch.testing.assert_close(
        part(x, mask=padding_mask(), causal=True), expected, atol=1e-5, rtol=1e-5
    )


def test_mha_matches_torch_in_cross_attention():
    part = build("mha")
    ref = copied_into_torch(part)
    x, ctx = torch.randn(2, 4, D), torch.randn(2, 7, D)
    expected, _ = ref(x, ctx, ctx, key_padding_mask=~padding_mask())
    torch.testing.assert_close(
        part(x, context=ctx, mask=padding_mask()), expected, atol=1e-5, rtol=1e-5
    )


# -- the grouped-query family ----------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
def test_gqa_with_all_kv_heads_is_mha(causal):
    mha = build("mha")
    gqa = build({"name": "gqa", "kv_heads": H})
    gqa.load_state_dict(mha.state_dict())
    x, mask = torch.randn(2, 7, D), padding_mask()
    torch.testing.assert_close(gqa(x, mask=mask, causal=causal), mha(x, mask=mask, causal=causal))
    torch.testing.assert_close(gqa(x, causal=causal), mha(x, causal=causal))


@pytest.mark.parametrize("kv_heads", [1, 2])
def test_gqa_is_mha_with_shared_key_value_heads(kv_heads):
    """Query head h reads key/value head h // (heads // kv_heads)."""
    gqa = build({"name": "gqa", "kv_heads": kv_heads})
    mha = build("mha")
    groups, head_dim = H // kv_heads, D // H
    state = dict(gqa.state_dict())
    for name in ("k_proj", "v_proj"):
        weight = state[f"{name}.weight"].view(kv_heads, head_dim, D)
        bias = state[f"{name}.bias"].view(kv_heads, head_dim)
        state[f"{name}.weight"] = weight.repeat_interleave(groups, dim=0).reshape(D, D)
        state[f"{name}.bias"] = bias.repeat_interleave(groups, dim=0).reshape(D)
    mha.load_state_dict(state)
    x, mask = torch.randn(2, 7, D), padding_mask()
    for kwargs in ({}, {"causal": True}, {"mask": mask}, {"mask": mask, "need_weights": True}):
        torch.testing.assert_close(gqa(x, **kwargs), mha(x, **kwargs), atol=1e-6, rtol=1e-5)


def test_mqa_is_gqa_with_one_kv_head():
    mqa, gqa = build("mqa"), build({"name": "gqa", "kv_heads": 1})
    gqa.load_state_dict(mqa.state_dict())
    x = torch.randn(2, 7, D)
    torch.testing.assert_close(mqa(x, causal=True), gqa(x, causal=True))


@pytest.mark.parametrize("position", ["rotary", "alibi"])
def test_relative_positions_agree_between_fused_and_explicit_paths(position):
    part = build({"name": "gqa", "kv_heads": 2, "position": position})
    x, mask = torch.randn(2, 7, D), padding_mask()
    out, _ = part(x, mask=mask, causal=True, need_weights=True)
    torch.testing.assert_close(part(x, mask=mask, causal=True), out, atol=1e-6, rtol=1e-5)


def test_alibi_in_mha_is_an_additive_score_bias():
    part = build({"name": "mha", "position": "alibi"})
    plain = build("mha")
    plain.load_state_dict(part.state_dict())
    x = torch.randn(1, 5, D)
    _, weights = part(x, need_weights=True)
    q = part.q_proj(x).view(1, 5, H, D // H).transpose(1, 2)
    k = part.k_proj(x).view(1, 5, H, D // H).transpose(1, 2)
    slopes = torch.tensor([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8])  # 4 heads (Press et al.)
    distance = (torch.arange(5)[:, None] - torch.arange(5)[None, :]).abs()
    scores = q @ k.transpose(-2, -1) / math.sqrt(D // H) - slopes[:, None, None] * distance
    torch.testing.assert_close(weights, scores.softmax(-1), atol=1e-6, rtol=1e-5)


# -- local ----------------------------------------------------------------------------------


def band(length, window, causal):
    distance = torch.arange(length)[:, None] - torch.arange(length)[None, :]
    if causal:
        return (distance >= 0) & (distance < window)
    return distance.abs() < window


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("kv_heads", [H, 2])
@pytest.mark.parametrize("length", [5, 11, 12])  # dense path, blocked with and without padding
def test_local_is_mha_with_a_band_mask(causal, kv_heads, length):
    window = 3
    local = build({"name": "local", "window": window, "kv_heads": kv_heads})
    full = build({"name": "gqa", "kv_heads": kv_heads})
    full.load_state_dict(local.state_dict())
    x, pad = torch.randn(2, length, D), padding_mask(2, length)
    allowed = band(length, window, causal)[None] & pad[:, None, :]  # [B, T, T]
    expected = full(x, mask=allowed)
    torch.testing.assert_close(local(x, mask=pad, causal=causal), expected, atol=1e-6, rtol=1e-5)
    out, _ = local(x, mask=pad, causal=causal, need_weights=True)  # the dense path
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)


def test_local_with_a_wide_window_is_mha():
    local, mha = build({"name": "local", "window": 64}), build("mha")
    mha.load_state_dict(local.state_dict())
    x = torch.randn(2, 9, D)
    torch.testing.assert_close(local(x, causal=True), mha(x, causal=True))
    torch.testing.assert_close(local(x), mha(x))


def test_local_cache_keeps_only_the_window():
    local = build({"name": "local", "window": 3})
    x = torch.randn(2, 10, D)
    cache, outs = {}, []
    for t in range(10):
        out, cache = local(x[:, t : t + 1], causal=True, cache=cache)
        outs.append(out)
        assert cache["k"].shape[2] == min(t + 1, 2)
    torch.testing.assert_close(torch.cat(outs, 1), local(x, causal=True), atol=1e-5, rtol=1e-5)


# -- linear ---------------------------------------------------------------------------------


def linear_reference(part, x, mask=None, causal=False):
    """Katharopoulos et al. 2020, eq. 4 (with the causal sum of eq. 8), computed densely."""
    b, t, _ = x.shape

    def split(a):
        return a.view(b, t, H, D // H).transpose(1, 2)  # [B, H, T, Dh]

    q = F.elu(split(part.q_proj(x))) + 1
    k = F.elu(split(part.k_proj(x))) + 1
    v = split(part.v_proj(x))
    sim = q @ k.transpose(-2, -1)  # [B, H, T, T]
    if mask is not None:
        sim = sim * mask[:, None, None, :]
    if causal:
        sim = sim.tril()
    out = (sim / sim.sum(-1, keepdim=True)) @ v
    return part.out_proj(out.transpose(1, 2).reshape(b, t, D))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("length", [4, 11])  # one chunk; several chunks with padding
def test_linear_matches_the_quadratic_formula(causal, length):
    part = build({"name": "linear", "chunk": 4})
    x, mask = torch.randn(2, length, D), padding_mask(2, length)
    mask[:, 0] = True
    expected = linear_reference(part, x, mask, causal)
    torch.testing.assert_close(part(x, mask=mask, causal=causal), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(part(x, causal=causal), linear_reference(part, x, None, causal))


def test_linear_chunk_size_does_not_change_outputs():
    small, large = build({"name": "linear", "chunk": 3}), build({"name": "linear", "chunk": 64})
    large.load_state_dict(small.state_dict())
    x = torch.randn(2, 20, D)
    torch.testing.assert_close(small(x, causal=True), large(x, causal=True), atol=1e-5, rtol=1e-5)


def test_linear_cache_has_constant_size():
    part = build("linear")
    x = torch.randn(2, 6, D)
    cache = {}
    for t in range(6):
        _, cache = part(x[:, t : t + 1], causal=True, cache=cache)
        assert cache["S"].shape == (2, H, D // H, D // H) and cache["z"].shape == (2, H, D // H)


# -- additive and multiplicative ------------------------------------------------------------


@pytest.mark.parametrize("heads", [1, 2])
def test_additive_matches_bahdanau(heads):
    part = build("additive", heads=heads)
    x, ctx, mask = torch.randn(2, 3, D), torch.randn(2, 7, D), padding_mask()
    out = part(x, context=ctx, mask=mask)
    hd = D // heads
    expected = torch.zeros(2, 3, D)
    for b in range(2):
        for i in range(3):
            for h in range(heads):
                cut = slice(h * hd, (h + 1) * hd)
                q = part.q_proj(x[b, i])[cut]  # W_a s
                scores = torch.stack(
                    [
                        part.score[h] @ torch.tanh(q + part.k_proj(ctx[b, j])[cut])
                        if mask[b, j]
                        else torch.tensor(float("-inf"))
                        for j in range(7)
                    ]
                )
                expected[b, i, cut] = scores.softmax(0) @ ctx[b, :, cut]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("heads", [1, 2])
def test_multiplicative_matches_luong_general(heads):
    part = build("multiplicative", heads=heads)
    x, ctx, mask = torch.randn(2, 3, D), torch.randn(2, 7, D), padding_mask()
    hd = D // heads
    mapped = part.k_proj(ctx)  # W_a h_s
    expected = torch.zeros(2, 3, D)
    for h in range(heads):
        cut = slice(h * hd, (h + 1) * hd)
        scores = x[..., cut] @ mapped[..., cut].transpose(1, 2)  # no 1/sqrt(d) in Luong
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        expected[..., cut] = scores.softmax(-1) @ ctx[..., cut]
    torch.testing.assert_close(part(x, context=ctx, mask=mask), expected, atol=1e-5, rtol=1e-5)
