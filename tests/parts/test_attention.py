"""The attention contract (nnblocks/parts/attention/__init__.py), for every registered part.

Contract tests are parametrised over the registry, so a new attention part is tested here
without anyone listing it. The combinators (`parallel`, `sequential`) have their own file.
"""

import inspect

import pytest
import torch
import torch.nn.functional as F

import nnblocks
from nnblocks.errors import NNBlocksError, ShapeError, SpecError

D, H = 16, 4
COMBINATORS = {"parallel", "sequential"}
PARTS = [p for p in nnblocks.list_parts("attention") if p not in COMBINATORS]
# Options that make a part's special behaviour show at the tiny sizes used here.
OPTIONS = {"local": {"window": 3}, "gqa": {"kv_heads": 2}, "linear": {"chunk": 4}}
PER_KEY_MASKS_ONLY = {"linear"}  # documented: no per-query masks (no score matrix)


def make(name, **options):
    spec = {"name": name, **OPTIONS.get(name, {}), **options}
    return nnblocks.build(spec, "attention", dim=D, heads=H).eval()


def takes(part, argument):
    return argument in inspect.signature(part.forward).parameters


def takes_option(name, option):
    return option in inspect.signature(nnblocks.get_part("attention", name)).parameters


CACHED = [p for p in PARTS if takes(make(p), "cache")]
WEIGHTED = [p for p in PARTS if takes(make(p), "need_weights")]
POSITIONED = [p for p in PARTS if takes_option(p, "position")]


def step_by_step(part, x, sizes=None, mask=None, **kwargs):
    """Decode ``x`` in pieces of ``sizes`` positions with a cache; outputs joined."""
    sizes = sizes or [1] * x.shape[1]
    cache, outs, start = {}, [], 0
    for size in sizes:
        end = start + size
        seen = None if mask is None else mask[:, :end]
        out, cache = part(x[:, start:end], mask=seen, cache=cache, **kwargs)
        outs.append(out)
        start = end
    return torch.cat(outs, dim=1), cache


def padding_mask():
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[0, [2, 5]] = False
    mask[1, 0] = False
    return mask


# -- shapes --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PARTS)
def test_self_and_cross_attention_shapes(name):
    part = make(name)
    x, ctx = torch.randn(2, 5, D), torch.randn(2, 7, D)
    assert part(x).shape == (2, 5, D)
    assert part(x, context=ctx).shape == (2, 5, D)
    assert part(x, causal=True).shape == (2, 5, D)


@pytest.mark.parametrize("name", PARTS)
def test_output_depends_on_input(name):
    part = make(name)
    x = torch.randn(2, 5, D)
    out = part(x)
    assert torch.isfinite(out).all()
    assert not torch.allclose(out, part(x + torch.randn_like(x)))


# -- causality and masks -------------------------------------------------------------------


@pytest.mark.parametrize("name", PARTS)
def test_causal_outputs_ignore_the_future(name):
    part = make(name)
    x = torch.randn(2, 8, D)
    later = x.clone()
    later[:, 5:] += torch.randn(2, 3, D)
    out, out_later = part(x, causal=True), part(later, causal=True)
    torch.testing.assert_close(out[:, :5], out_later[:, :5], atol=1e-6, rtol=0)
    assert not torch.allclose(out[:, 5:], out_later[:, 5:])


@pytest.mark.parametrize("name", PARTS)
@pytest.mark.parametrize("causal", [False, True])
def test_padding_mask_hides_keys(name, causal):
    part = make(name)
    x, mask = torch.randn(2, 8, D), padding_mask()
    changed = x + (~mask)[..., None] * torch.randn(2, 8, D)  # only masked positions change
    out, out_changed = part(x, mask=mask, causal=causal), part(changed, mask=mask, causal=causal)
    torch.testing.assert_close(out[mask], out_changed[mask], atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", PARTS)
def test_padding_mask_hides_context(name):
    part = make(name)
    x, ctx, mask = torch.randn(2, 5, D), torch.randn(2, 8, D), padding_mask()
    changed = ctx + (~mask)[..., None] * torch.randn(2, 8, D)
    out = part(x, context=ctx, mask=mask)
    torch.testing.assert_close(out, part(x, context=changed, mask=mask), atol=1e-6, rtol=0)
    assert not torch.allclose(out, part(x, context=ctx))  # the mask does something


@pytest.mark.parametrize("name", PARTS)
def test_mask_ranks_agree(name):
    part = make(name)
    x, ctx, mask = torch.randn(2, 5, D), torch.randn(2, 8, D), padding_mask()
    out = part(x, context=ctx, mask=mask)
    for same in (
        mask[:, None, :],
        mask[:, None, None, :],
        mask[:, None, None, :].expand(2, H, 1, 8),
    ):
        torch.testing.assert_close(part(x, context=ctx, mask=same), out, atol=1e-6, rtol=1e-6)
    if name not in PER_KEY_MASKS_ONLY:
        per_query = mask[:, None, :].expand(2, 5, 8)
        torch.testing.assert_close(part(x, context=ctx, mask=per_query), out, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", [p for p in PARTS if p not in PER_KEY_MASKS_ONLY])
def test_per_query_mask_hides_each_key_from_its_rows(name):
    part = nnblocks.build(name, "attention", dim=D, heads=H).eval()  # local: every key in reach
    x, ctx = torch.randn(2, 4, D), torch.randn(2, 6, D)
    mask = torch.rand(2, 4, 6) > 0.5
    mask[:, :, 0] = True  # every row keeps a key
    out = part(x, context=ctx, mask=mask)
    for j in range(6):
        changed = ctx.clone()
        changed[:, j] += torch.randn(2, D)
        out_changed = part(x, context=changed, mask=mask)
        blind = ~mask[:, :, j]  # [B, Tq]: rows that may not see key j
        torch.testing.assert_close(out[blind], out_changed[blind], atol=1e-6, rtol=0)
        if (~blind).any():
            assert not torch.allclose(out[~blind], out_changed[~blind])


@pytest.mark.parametrize("name", sorted(PER_KEY_MASKS_ONLY))
def test_per_query_mask_is_refused_clearly(name):
    part = make(name)
    with pytest.raises(ShapeError, match=f"`{name}`.*per-key mask"):
        part(torch.randn(2, 4, D), mask=torch.ones(2, 4, 4, dtype=torch.bool))


@pytest.mark.parametrize("name", PARTS)
@pytest.mark.parametrize("rank", [2, 3])
def test_fully_masked_rows_are_zero_with_finite_gradients(name, rank):
    if rank == 3 and name in PER_KEY_MASKS_ONLY:
        pytest.skip("per-key masks only")
    part = make(name).train()
    x = torch.randn(2, 5, D, requires_grad=True)
    ctx = torch.randn(2, 6, D, requires_grad=True)
    if rank == 2:
        mask = torch.ones(2, 6, dtype=torch.bool)
        mask[1] = False  # nothing to attend for the whole of sample 1
        empty = torch.zeros(2, 5, dtype=torch.bool)
        empty[1] = True
    else:
        mask = torch.ones(2, 5, 6, dtype=torch.bool)
        mask[0, 2] = False  # query 2 of sample 0 sees nothing
        empty = ~mask.any(-1)
    out = part(x, context=ctx, mask=mask)
    assert torch.isfinite(out).all()
    assert (out[empty] == 0).all()
    assert (out[~empty].abs().sum(-1) > 0).all()
    out.square().sum().backward()
    grads = [x.grad, ctx.grad] + [p.grad for p in part.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", PARTS)
def test_padded_first_key_with_causal_is_finite(name):
    part = make(name)
    x = torch.randn(2, 5, D, requires_grad=True)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[:, 0] = False  # query 0 may only see key 0, which is padding
    out = part(x, mask=mask, causal=True)
    assert torch.isfinite(out).all()
    assert (out[:, 0] == 0).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


# -- weights -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", WEIGHTED)
@pytest.mark.parametrize("causal", [False, True])
def test_weights_are_distributions_over_allowed_keys(name, causal):
    part = make(name)
    x, mask = torch.randn(2, 8, D), padding_mask()
    out, weights = part(x, mask=mask, causal=causal, need_weights=True)
    assert weights.shape == (2, H, 8, 8)
    torch.testing.assert_close(out, part(x, mask=mask, causal=causal), atol=1e-5, rtol=1e-5)
    blocked = ~mask[:, None, None, :].expand(2, H, 8, 8)
    if causal:
        blocked = blocked | ~torch.ones(8, 8, dtype=torch.bool).tril()
    assert (weights[blocked] == 0).all()
    rows = weights.sum(-1)
    live = ~blocked.all(-1)
    torch.testing.assert_close(rows[live], torch.ones_like(rows[live]))
    assert (rows[~live] == 0).all()


@pytest.mark.parametrize("name", [p for p in WEIGHTED if p not in PER_KEY_MASKS_ONLY])
def test_weights_respect_per_head_masks(name):
    part = nnblocks.build(name, "attention", dim=D, heads=H).eval()  # local: every key in reach
    x, ctx = torch.randn(2, 3, D), torch.randn(2, 5, D)
    mask = torch.rand(2, H, 3, 5) > 0.4
    mask[..., 0] = True
    _, weights = part(x, context=ctx, mask=mask, need_weights=True)
    assert (weights[~mask] == 0).all()
    assert (weights[mask] > 0).all()


# -- cache ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CACHED)
@pytest.mark.parametrize("sizes", [None, [3, 1, 2, 2]], ids=["steps", "chunks"])
def test_cached_decoding_equals_full_causal_pass(name, sizes):
    part = make(name)
    x, mask = torch.randn(2, 8, D), padding_mask()
    mask[:, 0] = True  # keep query 0 alive in both batches
    full = part(x, mask=mask, causal=True)
    steps, cache = step_by_step(part, x, sizes, mask=mask, causal=True)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)
    assert cache["offset"] == 8


@pytest.mark.parametrize("name", POSITIONED)
@pytest.mark.parametrize("position", ["rotary", "alibi"])
def test_cached_decoding_with_relative_positions(name, position):
    part = make(name, position=position)
    x = torch.randn(2, 8, D)
    full = part(x, causal=True)
    assert not torch.allclose(full, make(name)(x, causal=True))  # positions matter
    for sizes in (None, [2, 3, 3]):
        steps, _ = step_by_step(part, x, sizes, causal=True)
        torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)


class RawRelative(torch.nn.Module):
    """A relative part without `adjust_cached`: attention must re-adjust raw cached keys."""

    relative = True

    def __init__(self, dim, heads):
        super().__init__()
        self.rotary = nnblocks.build("rotary", "position", dim=dim)
        self.alibi = nnblocks.build("alibi", "position", heads=heads)

    def adjust(self, q, k, q_pos, k_pos):
        q, k, _ = self.rotary.adjust(q, k, q_pos, k_pos)
        return self.alibi.adjust(q, k, q_pos, k_pos)


@pytest.mark.parametrize("name", POSITIONED)
def test_cached_decoding_with_a_relative_part_that_only_adjusts(name):
    head_dim = D // H
    part = make(name, position=RawRelative(head_dim, H))
    x = torch.randn(2, 8, D)
    steps, _ = step_by_step(part, x, [3, 1, 4], causal=True)
    torch.testing.assert_close(steps, part(x, causal=True), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", CACHED)
def test_cached_cross_attention_equals_full_pass(name):
    part = make(name)
    x, ctx, mask = torch.randn(2, 5, D), torch.randn(2, 8, D), padding_mask()
    cache, outs = {}, []
    for t in range(5):
        out, cache = part(x[:, t : t + 1], context=ctx, mask=mask, cache=cache)
        outs.append(out)
    full = part(x, context=ctx, mask=mask)
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-5, rtol=1e-5)
    assert any(key.startswith("context") for key in cache)  # the context is kept projected


@pytest.mark.parametrize("name", CACHED)
def test_cache_is_batch_first_and_reorders_like_beam_search(name):
    part = make(name)
    x = torch.randn(3, 6, D)
    full = part(x, causal=True)
    order = torch.tensor([2, 0, 1])
    _, cache = step_by_step(part, x[:, :4], causal=True)
    for key, value in cache.items():
        assert isinstance(value, int) or value.shape[0] == 3, key
    cache = {k: v.index_select(0, order) if torch.is_tensor(v) else v for k, v in cache.items()}
    rest, _ = step_by_step_from(part, x[order, 4:], cache, causal=True)
    torch.testing.assert_close(rest, full[order, 4:], atol=1e-5, rtol=1e-5)


def step_by_step_from(part, x, cache, **kwargs):
    outs = []
    for t in range(x.shape[1]):
        out, cache = part(x[:, t : t + 1], cache=cache, **kwargs)
        outs.append(out)
    return torch.cat(outs, dim=1), cache


@pytest.mark.parametrize("name", CACHED)
def test_cache_passed_in_is_not_changed(name):
    part = make(name)
    cache = {}
    _, new = part(torch.randn(2, 1, D), causal=True, cache=cache)
    assert cache == {} and new is not cache
    _, newer = part(torch.randn(2, 1, D), causal=True, cache=new)
    assert new["offset"] == 1 and newer["offset"] == 2


@pytest.mark.parametrize("name", sorted(set(CACHED) & set(WEIGHTED) - {"linear"}))
def test_weights_with_cache_cover_all_keys(name):
    part = make(name)
    x = torch.randn(2, 4, D)
    _, cache = part(x[:, :3], causal=True, cache={})
    out, weights, cache = part(x[:, 3:], causal=True, need_weights=True, cache=cache)
    reach = min(4, part.window) if name == "local" else 4  # local keeps only its window
    assert weights.shape == (2, H, 1, reach)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, H, 1))


def test_linear_refuses_weights_with_a_cache():
    part = make("linear")
    with pytest.raises(NNBlocksError, match="need_weights"):
        part(torch.randn(2, 1, D), need_weights=True, cache={})


# -- dtype, device, errors -----------------------------------------------------------------


@pytest.mark.parametrize("name", PARTS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_dtype_is_kept(name, dtype):
    part = make(name)
    x, mask = torch.randn(2, 8, D), padding_mask()
    reference = part(x, mask=mask, causal=True)
    part = part.to(dtype)
    out = part(x.to(dtype), mask=mask, causal=True)
    assert out.dtype == dtype and out.device == x.device
    tolerance = 1e-5 if dtype == torch.float64 else 0.1
    torch.testing.assert_close(out.float(), reference, atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("name", PARTS)
def test_shape_errors_name_the_part(name):
    part = make(name)
    x = torch.randn(2, 5, D)
    bad_calls = [
        ("`x`", lambda: part(torch.randn(5, D))),
        ("`x`", lambda: part(torch.randn(2, 5, D + 1))),
        ("`context`", lambda: part(x, context=torch.randn(2, 7, D - 1))),
        ("`context`", lambda: part(x, context=torch.randn(3, 7, D))),
        ("`mask`", lambda: part(x, mask=torch.ones(2, 4, dtype=torch.bool))),
        ("`mask`", lambda: part(x, mask=torch.ones(2, 5))),
        ("`mask`", lambda: part(x, mask=torch.ones(2, 5, dtype=torch.bool)[None])),
    ]
    for what, call in bad_calls:
        with pytest.raises(ShapeError, match=f"`{name}`.*{what}"):
            call()


@pytest.mark.parametrize("name", CACHED)
def test_cache_mask_must_cover_cached_keys(name):
    part = make(name)
    _, cache = part(torch.randn(2, 3, D), causal=True, cache={})
    with pytest.raises(ShapeError, match="cached and new"):
        part(torch.randn(2, 1, D), mask=torch.ones(2, 1, dtype=torch.bool), cache=cache)
    with pytest.raises(ShapeError, match=f"`{name}`"):
        part(torch.randn(3, 1, D), cache=cache)  # another batch


@pytest.mark.parametrize("name", PARTS)
def test_spec_rebuilds_the_same_part(name):
    part = make(name)
    again = nnblocks.build(nnblocks.spec_of(part), "attention")
    again.load_state_dict(part.state_dict())
    x = torch.randn(2, 5, D)
    torch.testing.assert_close(again.eval()(x, causal=True), part(x, causal=True))


# -- options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"name": "mha", "heads": 3}, "`heads`.*divides dim=16"),
        ({"name": "gqa", "kv_heads": 3}, "`kv_heads`.*divides heads=4"),
        ({"name": "mha", "dropout": 1.0}, "`dropout`"),
        ({"name": "local", "window": 0}, "`window`"),
        ({"name": "linear", "chunk": 0}, "`chunk`"),
        ({"name": "additive", "heads": 5}, "`heads`"),
        ({"name": "mha", "position": "sinusoidal"}, "relative position part"),
        ({"name": "mha", "position": {"name": "rotary", "base": 0.5}}, "`base`"),
    ],
)
def test_bad_options_raise_spec_errors_with_the_path(spec, match):
    with pytest.raises(SpecError, match=match) as info:
        nnblocks.build(spec, "attention", at="decoder.self_attention", dim=D, heads=H)
    assert "decoder.self_attention" in str(info.value)


def test_grouped_query_heads():
    assert make("gqa", kv_heads=None).kv_heads == H // 2  # a bare "gqa" is not "mha"
    assert make("mqa").k_proj.out_features == D // H
    assert make("mha").k_proj.out_features == D
    assert make("local", kv_heads=1).v_proj.out_features == D // H


def test_attention_dropout_only_in_training():
    part = make("mha", dropout=0.5)
    x = torch.randn(2, 6, D)
    torch.testing.assert_close(part(x), part(x))
    part.train()
    assert not torch.allclose(part(x), part(x))


def test_a_plain_causal_pass_hands_the_flag_to_the_fused_kernel(monkeypatch):
    calls = []
    kernel = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append((kwargs.get("attn_mask"), kwargs.get("is_causal")))
        return kernel(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    part = make("mha")
    _, cache = part(torch.randn(2, 6, D), causal=True, cache={})
    part(torch.randn(2, 1, D), causal=True, cache=cache)  # one step sees every cached key
    assert calls == [(None, True), (None, False)]


def test_integer_input_error_names_the_expected_shape():
    # Regression: the dtype message printed the repr of a local function instead of the shape.
    attn = nnblocks.build("mha", "attention", dim=8, heads=2)
    with pytest.raises(
        ShapeError, match=r"as floats \[B, T, 8\]\. Received: x of dtype torch\.int64"
    ):
        attn(torch.zeros(2, 3, 8, dtype=torch.long))
