"""The attention combinators `parallel` and `sequential`."""

import inspect

import pytest
import torch
from torch import nn

import nnblocks
from nnblocks.errors import NNBlocksError, ShapeError, SpecError

D, H = 16, 2


def make(spec):
    return nnblocks.build(spec, "attention", dim=D, heads=H)


class NoCacheAttention(nn.Module):
    """A minimal correct attention without `cache=` or `need_weights=` (a user's part)."""

    def __init__(self, dim, heads):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, context=None, mask=None, causal=False):
        keys = x if context is None else context
        scores = x @ keys.transpose(1, 2) / x.shape[-1] ** 0.5  # [B, Tq, Tk]
        allowed = torch.ones_like(scores, dtype=torch.bool)
        if mask is not None:
            allowed = allowed & mask[:, None, :]
        if causal:
            allowed = allowed & torch.ones_like(allowed[0]).tril()
        weights = scores.masked_fill(~allowed, float("-inf")).softmax(-1).nan_to_num(0.0)
        return self.proj(weights @ keys) * allowed.any(-1, keepdim=True)


def step_by_step(part, x, **kwargs):
    cache, outs = {}, []
    for t in range(x.shape[1]):
        out, cache = part(x[:, t : t + 1], causal=True, cache=cache, **kwargs)
        outs.append(out)
    return torch.cat(outs, dim=1)


MERGES = ["sum", "gate", "concat"]
COMBINATORS = [
    {"name": "parallel", "branches": ["mha", "local"], "merge": "sum"},
    {"name": "parallel", "branches": ["mha", "gqa"], "merge": "gate"},
    {"name": "parallel", "branches": ["mha", "mha", "mqa"], "merge": "concat"},
    {"name": "sequential", "parts": ["mha", "local"], "residual": True},
    {"name": "sequential", "parts": ["mha", "mha"], "residual": False},
]
IDS = ["parallel-sum", "parallel-gate", "parallel-concat", "seq-residual", "seq-plain"]


@pytest.mark.parametrize("spec", COMBINATORS, ids=IDS)
def test_self_and_cross_attention_shapes(spec):
    part = make(spec)
    x, ctx = torch.randn(2, 5, D), torch.randn(2, 7, D)
    assert part(x).shape == (2, 5, D)
    assert part(x, context=ctx, mask=torch.ones(2, 7, dtype=torch.bool)).shape == (2, 5, D)


@pytest.mark.parametrize("merge", MERGES)
def test_parallel_merges_the_branch_outputs(merge):
    part = make({"name": "parallel", "branches": ["mha", "local"], "merge": merge})
    x = torch.randn(2, 6, D)
    outs = [branch(x, causal=True) for branch in part.branches]
    if merge == "sum":
        expected = outs[0] + outs[1]
    elif merge == "gate":  # the gate starts at equal weights
        expected = (outs[0] + outs[1]) / 2
    else:
        expected = part.proj(torch.cat(outs, dim=-1))
    torch.testing.assert_close(part(x, causal=True), expected)


def test_gate_learns_per_position_weights():
    part = make({"name": "parallel", "branches": ["mha", "mha"], "merge": "gate"})
    with torch.no_grad():
        part.gate.bias.copy_(torch.tensor([30.0, -30.0]))  # all weight on branch 0
    x = torch.randn(2, 4, D)
    torch.testing.assert_close(part(x), part.branches[0](x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("residual", [True, False])
def test_sequential_composition(residual):
    part = make({"name": "sequential", "parts": ["mha", "mha"], "residual": residual})
    x = torch.randn(2, 5, D)
    first, second = part.parts
    a1 = first(x, causal=True)
    if residual:
        expected = a1 + second(x + a1, causal=True)  # the update, without x itself
    else:
        expected = second(a1, causal=True)
    torch.testing.assert_close(part(x, causal=True), expected)


@pytest.mark.parametrize("spec", COMBINATORS, ids=IDS)
def test_no_leak_from_the_future(spec):
    part = make(spec)
    x = torch.randn(2, 6, D)
    y = x.clone()
    y[:, 4:] += torch.randn(2, 2, D)
    torch.testing.assert_close(part(x, causal=True)[:, :4], part(y, causal=True)[:, :4])


@pytest.mark.parametrize("spec", COMBINATORS, ids=IDS)
def test_cached_steps_equal_the_full_causal_pass(spec):
    part = make(spec).eval()
    x = torch.randn(2, 6, D)
    torch.testing.assert_close(step_by_step(part, x), part(x, causal=True), atol=1e-5, rtol=1e-5)


def test_cache_holds_one_cache_per_inner_part():
    part = make({"name": "parallel", "branches": ["mha", "local"]})
    _, cache = part(torch.randn(2, 1, D), causal=True, cache={})
    assert len(cache["branches"]) == 2
    part = make({"name": "sequential", "parts": ["mha", "mha", "mha"]})
    _, cache = part(torch.randn(2, 1, D), causal=True, cache={})
    assert len(cache["parts"]) == 3


@pytest.mark.parametrize("spec", COMBINATORS, ids=IDS)
def test_padding_mask_is_respected(spec):
    part = make(spec)
    x = torch.randn(2, 6, D)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[:, 4:] = False
    y = x.clone()
    y[:, 4:] = torch.randn(2, 2, D)  # change only masked keys
    torch.testing.assert_close(part(x, mask=mask)[:, :4], part(y, mask=mask)[:, :4])


@pytest.mark.parametrize("spec", COMBINATORS, ids=IDS)
def test_fully_masked_rows_are_zero(spec):
    part = make(spec)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1] = False  # the second sequence has nothing to attend
    x = torch.randn(2, 5, D, requires_grad=True)
    out = part(x, mask=mask)
    assert torch.isfinite(out).all()
    assert out[1].abs().max() == 0
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("spec", COMBINATORS, ids=IDS)
def test_need_weights_rows_sum_to_one(spec):
    part = make(spec)
    out, weights = part(torch.randn(2, 5, D), causal=True, need_weights=True)
    assert out.shape == (2, 5, D)
    assert weights.shape == (2, H, 5, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, H, 5))
    assert weights.triu(1).abs().max() == 0  # causal


def test_weights_and_cache_together():
    part = make({"name": "parallel", "branches": ["mha", "mha"], "merge": "gate"})
    out, weights, cache = part(torch.randn(2, 1, D), causal=True, need_weights=True, cache={})
    assert out.shape == (2, 1, D) and weights.shape == (2, H, 1, 1) and "branches" in cache


def test_capabilities_follow_the_inner_parts():
    full = make({"name": "parallel", "branches": ["mha", "mha"]})
    params = inspect.signature(full.forward).parameters
    assert "cache" in params and "need_weights" in params
    plain = make({"name": "parallel", "branches": ["mha", NoCacheAttention]})
    params = inspect.signature(plain.forward).parameters
    assert "cache" not in params and "need_weights" not in params
    seq = make({"name": "sequential", "parts": [NoCacheAttention, "mha"]})
    assert "cache" not in inspect.signature(seq.forward).parameters
    x = torch.randn(2, 4, D)
    assert plain(x, causal=True).shape == (2, 4, D)
    assert isinstance(plain, nnblocks.parts.attention.combine.Parallel)
    assert "Parallel(" in repr(plain)


def test_relative_position_is_handed_to_every_branch():
    part = make({"name": "parallel", "branches": ["mha", "local"], "position": "rotary"})
    for branch in part.branches:
        assert nnblocks.spec_of(branch)["position"] == "rotary"
    x = torch.randn(2, 5, D)
    torch.testing.assert_close(
        step_by_step(part.eval(), x), part(x, causal=True), atol=1e-5, rtol=1e-5
    )


def test_dtype_is_kept():
    part = make({"name": "parallel", "branches": ["mha", "mha"], "merge": "concat"}).double()
    assert part(torch.randn(2, 3, D, dtype=torch.float64)).dtype == torch.float64


def test_spec_round_trip():
    part = make(
        {"name": "parallel", "branches": ["mha", {"name": "local", "window": 2}], "merge": "gate"}
    )
    again = nnblocks.build(nnblocks.spec_of(part), "attention")
    shapes = {n: p.shape for n, p in part.named_parameters()}
    assert shapes == {n: p.shape for n, p in again.named_parameters()}
    assert "gate.weight" in shapes and "branches.1.q_proj.weight" in shapes


def test_bad_specs_name_the_place():
    with pytest.raises(SpecError, match="merge"):
        make({"name": "parallel", "merge": "average"})
    with pytest.raises(SpecError, match="branches"):
        make({"name": "parallel", "branches": "mha"})
    with pytest.raises(SpecError, match="branches"):
        make({"name": "parallel", "branches": []})
    with pytest.raises(NNBlocksError, match=r"branches\.1") as info:
        make({"name": "parallel", "branches": ["mha", "layer"]})  # a norm, not attention
    assert "attention" in str(info.value)
    with pytest.raises(NNBlocksError, match=r"parts\.0"):
        nnblocks.build({"name": "sequential", "parts": ["mha"]}, "attention", dim=15, heads=2)


def test_wrong_input_rank_raises_shape_error():
    part = make({"name": "sequential"})
    with pytest.raises(ShapeError, match="sequential"):
        part(torch.randn(5, D))
    with pytest.raises(ShapeError, match="parallel"):
        make({"name": "parallel"})(torch.randn(2, 5, D + 1))


@pytest.mark.parametrize("name", ["parallel", "sequential"])
def test_contract_kit_passes(name):
    check = pytest.importorskip("nnblocks.check")
    report = check.check_part("attention", name)
    assert report.ok, str(report)


def test_docstring_examples_run():
    import doctest

    from nnblocks.parts.attention import combine

    result = doctest.testmod(combine, extraglobs={"nnblocks": nnblocks, "torch": torch})
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("merge", ["gate", "concat"])
def test_parallel_starting_as_its_first_branch_computes_exactly_that_branch(merge):
    torch.manual_seed(0)
    attn = nnblocks.build(
        {"name": "parallel", "branches": ["mha", "mha"], "merge": merge, "start": "first"},
        "attention", dim=16, heads=2,
    )  # fmt: skip
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(
        attn(x, causal=True), attn.branches[0](x, causal=True), atol=0, rtol=0
    )
    with pytest.raises(nnblocks.SpecError, match="start"):
        nnblocks.build(
            {"name": "parallel", "merge": "sum", "start": "first"}, "attention", dim=16, heads=2
        )
