"""The `transformer` block: wiring of its slots, masks, decoding cache and build-time errors."""

import inspect

import pytest
import torch
from torch import nn

import nnblocks
from nnblocks.errors import RegistryError, ShapeError, SpecError

D, H = 16, 4


def block_of(**options):
    return nnblocks.build({"name": "transformer", **options}, "block", dim=D, heads=H)


@pytest.fixture
def scratch_registry():
    from nnblocks import registry

    saved = {kind: dict(parts) for kind, parts in registry._PARTS.items()}
    yield
    registry._PARTS.clear()
    registry._PARTS.update(saved)


# -- the contract -----------------------------------------------------------------------


@pytest.mark.parametrize("name", nnblocks.list_parts("block"))
def test_contract_shape_dtype_spec(name):
    block = nnblocks.build(name, "block", dim=D, heads=H).double().eval()
    x = torch.randn(2, 5, D, dtype=torch.float64)
    y = block(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    rebuilt = nnblocks.build(nnblocks.spec_of(block), "block").double().eval()
    rebuilt.load_state_dict(block.state_dict())
    torch.testing.assert_close(rebuilt(x), y)


def test_child_slots_and_their_kinds():
    block = block_of(cross_attention="mha")
    kinds = {name: nnblocks.kind_of(child) for name, child in block.named_children()}
    assert kinds == {
        "self_attention": "attention",
        "self_attention_norm": "norm",
        "cross_attention": "attention",
        "cross_attention_norm": "norm",
        "feedforward": "feedforward",
        "feedforward_norm": "norm",
        "dropout": "regularization",
        "drop_path": "regularization",
    }
    encoder_layer = block_of()
    assert encoder_layer.cross_attention is None and encoder_layer.cross_attention_norm is None
    assert not any("cross" in n for n, _ in encoder_layer.named_parameters())


def test_every_parameter_gets_a_gradient():
    block = block_of(cross_attention="mha")
    x, ctx = torch.randn(2, 5, D), torch.randn(2, 3, D)
    block(x, causal=True, context=ctx).pow(2).sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# -- wiring -----------------------------------------------------------------------------


def _randomise_norms(block):
    with torch.no_grad():
        for name, p in block.named_parameters():
            if "norm" in name:
                p.normal_()


def test_pre_norm_wiring():
    block = block_of(cross_attention="mha", norm_placement="pre").eval()
    _randomise_norms(block)
    x, ctx, m = (
        torch.randn(2, 5, D),
        torch.randn(2, 3, D),
        torch.tensor([[1, 1, 0], [1, 1, 1]]).bool(),
    )
    b = block
    h = x + b.self_attention(b.self_attention_norm(x), causal=True)
    h = h + b.cross_attention(b.cross_attention_norm(h), context=ctx, mask=m)
    h = h + b.feedforward(b.feedforward_norm(h))
    torch.testing.assert_close(block(x, causal=True, context=ctx, context_mask=m), h)


def test_post_norm_wiring():
    block = block_of(cross_attention="mha", norm_placement="post").eval()
    _randomise_norms(block)
    x, ctx = torch.randn(2, 5, D), torch.randn(2, 3, D)
    b = block
    h = b.self_attention_norm(x + b.self_attention(x, causal=True))
    h = b.cross_attention_norm(h + b.cross_attention(h, context=ctx))
    h = b.feedforward_norm(h + b.feedforward(h))
    torch.testing.assert_close(block(x, causal=True, context=ctx), h)


def test_padding_mask_equals_the_unpadded_sequence():
    block = block_of().eval()
    x = torch.randn(2, 6, D)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, 4:] = False  # sample 0 has 4 real tokens
    out = block(x, mask=mask)
    torch.testing.assert_close(out[0, :4], block(x[:1, :4])[0])
    torch.testing.assert_close(out[1], block(x[1:])[0])


def test_causal_ignores_the_future():
    block = block_of().eval()
    x = torch.randn(1, 6, D)
    changed = x.clone()
    changed[:, 4:] += 1.0
    a, b = block(x, causal=True), block(changed, causal=True)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


# -- options ----------------------------------------------------------------------------


def test_swapped_parts_build_and_run():
    block = block_of(attention={"name": "gqa", "kv_heads": 2}, feedforward="swiglu", norm="rms")
    assert nnblocks.spec_of(block.self_attention)["name"] == "gqa"
    assert nnblocks.spec_of(block.feedforward)["name"] == "swiglu"
    assert nnblocks.spec_of(block.feedforward_norm)["name"] == "rms"
    assert block(torch.randn(2, 3, D)).shape == (2, 3, D)


def test_one_norm_spec_gives_each_slot_its_own_parameters():
    block = block_of(cross_attention="mha", norm={"name": "layer", "eps": 1e-3})
    norms = [block.self_attention_norm, block.cross_attention_norm, block.feedforward_norm]
    assert len({id(n.weight) for n in norms}) == 3
    assert all(n.eps == 1e-3 for n in norms)


def test_activation_is_offered_to_the_feedforward():
    block = block_of(activation="relu")
    assert nnblocks.spec_of(block.feedforward.activation) == {"name": "relu"}
    own = block_of(activation="relu", feedforward={"name": "mlp", "activation": "tanh"})
    assert nnblocks.spec_of(own.feedforward.activation) == {"name": "tanh"}  # the spec wins
    default = block_of()
    assert nnblocks.spec_of(default.feedforward.activation) == {"name": "gelu"}


def test_residual_dropout_and_drop_path_only_in_training():
    block = block_of(dropout=0.3, drop_path=0.2)
    assert block.dropout.p == 0.3 and block.drop_path.p == 0.2
    x = torch.randn(4, 5, D)
    block.eval()
    torch.testing.assert_close(block(x), block(x))
    block.train()
    assert not torch.allclose(block(x), block(x))


def test_drop_path_skips_whole_branches_per_sample():
    # With p close to 1 most samples skip both branches: the output is the input.
    block = block_of(drop_path=0.999).train()
    x = torch.randn(64, 3, D)
    y = block(x)
    skipped = (y == x).flatten(1).all(1)
    assert skipped.sum() > 50
    assert ((y == x).flatten(1).any(1) == skipped).all()  # never part of a sample


def test_position_goes_to_self_attention_only():
    if "rotary" not in nnblocks.list_parts("position"):
        pytest.skip("relative position parts not registered yet")
    block = block_of(position="rotary", cross_attention="mha")
    assert nnblocks.spec_of(block.self_attention)["position"] == "rotary"
    assert "position" not in nnblocks.spec_of(block.cross_attention)
    x = torch.randn(1, 5, D)
    plain = block_of(cross_attention="mha")
    plain.load_state_dict(block.state_dict())
    ctx = torch.randn(1, 2, D)
    assert not torch.allclose(block(x, context=ctx), plain(x, context=ctx))


# -- errors at build time ---------------------------------------------------------------


def test_heads_not_dividing_dim_fails_at_the_attention_slot():
    with pytest.raises(SpecError) as info:
        nnblocks.build("transformer", "block", dim=10, heads=3, at="model.encoder.layers.0")
    assert info.value.path.startswith("model.encoder.layers.0.self_attention")


def test_unknown_feedforward_names_the_slot():
    with pytest.raises(RegistryError, match=r"model.layers.1.feedforward.*Did you mean `mlp`"):
        nnblocks.build(
            {"name": "transformer", "feedforward": "mpl"},
            "block",
            dim=D,
            heads=H,
            at="model.layers.1",
        )


def test_bad_norm_placement():
    with pytest.raises(
        SpecError, match=r"at `m.layer`.*norm_placement.*'pre' or 'post'.*'sandwich'"
    ):
        nnblocks.build(
            {"name": "transformer", "norm_placement": "sandwich"},
            "block",
            dim=D,
            heads=H,
            at="m.layer",
        )


def test_norm_instance_is_refused():
    with pytest.raises(SpecError, match="not a ready module"):
        block_of(norm=nn.LayerNorm(D))


def test_bad_dropout_names_its_slot():
    with pytest.raises(SpecError) as info:
        nnblocks.build({"name": "transformer", "dropout": 1.5}, "block", dim=D, heads=H, at="m.l")
    assert info.value.path == "m.l.dropout"


class NoFrills(nn.Module):
    """Self-attention stand-in without position or cache support: returns its input."""

    def __init__(self, dim, heads):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, context=None, mask=None, causal=False):
        return self.proj(x)


def test_position_with_an_attention_that_takes_none():
    with pytest.raises(SpecError, match=r"NoFrills takes no `position=`") as info:
        block_of(attention=NoFrills, position="rotary")
    assert info.value.path.endswith("self_attention")


def test_cache_with_an_attention_that_cannot_decode():
    block = block_of(attention=NoFrills)
    assert block(torch.randn(1, 2, D)).shape == (1, 2, D)
    with pytest.raises(SpecError, match="cannot decode incrementally"):
        block(torch.randn(1, 2, D), cache={})


# -- errors at call time ----------------------------------------------------------------


def test_context_required_exactly_with_cross_attention():
    decoder = nnblocks.build(
        {"name": "transformer", "cross_attention": "mha"}, "block", dim=D, heads=H, at="m.dec"
    )
    with pytest.raises(ShapeError, match=r"`m.dec` has a cross-attention.*context=None"):
        decoder(torch.randn(1, 2, D))
    encoder = block_of()
    with pytest.raises(ShapeError, match=r"no cross-attention.*\(1, 3, 16\)"):
        encoder(torch.randn(1, 2, D), context=torch.randn(1, 3, D))


# -- incremental decoding ---------------------------------------------------------------


@pytest.mark.parametrize("placement", ["pre", "post"])
def test_cached_steps_equal_one_full_pass(placement):
    block = block_of(cross_attention="mha", norm_placement=placement).eval()
    x, ctx = torch.randn(2, 6, D), torch.randn(2, 4, D)
    ctx_mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]).bool()
    full = block(x, causal=True, context=ctx, context_mask=ctx_mask)
    cache, steps = {}, []
    for t in range(0, 6, 2):  # two new positions per step
        y, cache = block(
            x[:, t : t + 2], causal=True, context=ctx, context_mask=ctx_mask, cache=cache
        )
        steps.append(y)
    assert set(cache) == {"self", "cross"}
    torch.testing.assert_close(torch.cat(steps, dim=1), full)


def test_cached_steps_with_padding_mask_over_all_keys():
    block = block_of().eval()
    x = torch.randn(2, 5, D)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 0] = False  # a left-padded sample
    full = block(x, mask=mask, causal=True)
    cache, steps = {}, []
    for t in range(5):
        y, cache = block(x[:, t : t + 1], mask=mask[:, : t + 1], causal=True, cache=cache)
        steps.append(y)
    assert set(cache) == {"self"}
    torch.testing.assert_close(torch.cat(steps, dim=1)[:, 1:], full[:, 1:])
    torch.testing.assert_close(torch.cat(steps, dim=1)[0], full[0])


def test_docstring_examples_run():
    import doctest

    import nnblocks.parts.block as module

    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("attention", nnblocks.list_parts("attention"))
def test_every_attention_fits_both_slots_and_decodes_step_by_step(attention):
    block = block_of(attention=attention, cross_attention=attention).eval()
    x, ctx = torch.randn(2, 5, D), torch.randn(2, 3, D)
    full = block(x, causal=True, context=ctx)
    assert full.shape == x.shape and torch.isfinite(full).all()
    if "cache" not in inspect.signature(block.self_attention.forward).parameters:
        return  # a part without incremental decoding: the full pass is its whole contract here
    cache, steps = {}, []
    for t in range(5):
        y, cache = block(x[:, t : t + 1], causal=True, context=ctx, cache=cache)
        steps.append(y)
    torch.testing.assert_close(torch.cat(steps, dim=1), full)


@pytest.mark.parametrize("position", ["rotary", "alibi"])
def test_cached_steps_with_relative_positions(position):
    if position not in nnblocks.list_parts("position"):
        pytest.skip(f"position part `{position}` not registered")
    block = block_of(position=position).eval()
    x = torch.randn(2, 5, D)
    full = block(x, causal=True)
    cache, steps = {}, []
    for t in range(5):
        y, cache = block(x[:, t : t + 1], causal=True, cache=cache)
        steps.append(y)
    torch.testing.assert_close(torch.cat(steps, dim=1), full)


def test_swapping_the_self_attention_updates_the_cache_capability():
    block = block_of().eval()
    x = torch.randn(1, 2, D)
    block.self_attention = NoFrills(D, H)  # as surgery would
    with pytest.raises(SpecError, match="cannot decode incrementally"):
        block(x, cache={})
    block.self_attention = nnblocks.build("mha", "attention", dim=D, heads=H)
    y, cache = block(x, causal=True, cache={})
    assert y.shape == x.shape and "self" in cache
