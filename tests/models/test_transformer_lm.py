"""The decoder-only `transformer_lm`: slots, masks, tying, spec round trip, errors."""

import json

import pytest
import torch

import nnblocks
from nnblocks.errors import NNBlocksError, ShapeError, SpecError

V = 19


def lm(**options):
    spec = {"name": "transformer_lm", "vocab_size": V, "dim": 16, "heads": 2, "layers": 2}
    return nnblocks.build({**spec, **options})


def test_forward_gives_next_token_logits():
    model = lm()
    tokens = torch.randint(3, V, (2, 7))
    out = model(tokens)
    assert out.shape == (2, 7, V) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_no_position_sees_the_future():
    model = lm(dropout=0.0)
    tokens = torch.randint(3, V, (2, 8))
    changed = tokens.clone()
    changed[:, 5:] = torch.randint(3, V, (2, 3))
    torch.testing.assert_close(model(tokens)[:, :5], model(changed)[:, :5])


def test_padded_keys_are_masked():
    """Left padding: real tokens attend to no pad key, so changing the pad id's embedding
    (what a pad position would contribute) changes nothing at real positions."""
    model = lm(dropout=0.0, position="rotary", tie_embeddings=False).eval()
    tokens = torch.tensor([[0, 0, 5, 6, 7], [4, 5, 6, 7, 8]])
    before = model(tokens)
    with torch.no_grad():
        model.embedding.weight[0] = torch.randn(16)
    after = model(tokens)
    torch.testing.assert_close(before[0, 2:], after[0, 2:])
    torch.testing.assert_close(before[1], after[1])


def test_slots_are_module_paths_of_their_kind():
    model = lm()
    expected = {
        "embedding": "embedding",
        "position": "position",
        "decoder.layers.0": "block",
        "decoder.layers.1.self_attention": "attention",
        "decoder.layers.1.feedforward": "feedforward",
        "decoder.layers.0.self_attention_norm": "norm",
        "decoder.final_norm": "norm",
        "head": "head",
    }
    for path, kind in expected.items():
        assert nnblocks.kind_of(model.get_submodule(path)) == kind, path


def test_tied_embeddings_share_one_parameter_and_are_declared():
    model = lm()
    assert model.head.weight is model.embedding.weight
    assert model.tied_parameters == [("embedding.weight", "head.weight")]
    untied = lm(tie_embeddings=False)
    assert untied.tied_parameters == []
    unique = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in untied.parameters()) - unique == V * 16


def test_tying_an_mlp_head_replaces_its_last_projection():
    model = lm(head={"name": "mlp", "hidden": 16})
    assert model.head.proj.weight is model.embedding.weight
    assert model.tied_parameters == [("embedding.weight", "head.proj.weight")]
    with pytest.raises(SpecError, match="head"):
        lm(head={"name": "mlp", "hidden": 8})  # [V, 8] cannot share [V, 16]


def test_spec_round_trip_rebuilds_the_same_architecture():
    model = lm(
        position="rotary",
        self_attention={"name": "gqa", "kv_heads": 1},
        layer_overrides={"1": {"feedforward": "swiglu"}},
    )
    spec = nnblocks.spec_of(model)
    again = nnblocks.build(json.loads(json.dumps(spec)))
    shapes = {n: p.shape for n, p in model.state_dict().items()}
    assert shapes == {n: p.shape for n, p in again.state_dict().items()}
    assert again.tied_parameters == model.tied_parameters


def test_relative_position_goes_to_attention_not_embeddings():
    model = lm(position="rotary")
    assert model.position is None
    for layer in model.decoder.layers:
        assert nnblocks.spec_of(layer.self_attention)["position"] == "rotary"
    absolute = lm(position="sinusoidal")
    assert nnblocks.kind_of(absolute.position) == "position"
    assert "position" not in nnblocks.spec_of(absolute.decoder.layers[0].self_attention)


def test_norm_placement_and_final_norm():
    assert lm().decoder.final_norm is not None  # pre-norm needs one
    post = lm(norm_placement="post")
    assert post.decoder.final_norm is None
    assert post.decoder.layers[0].norm_placement == "post"
    assert nnblocks.spec_of(lm(final_norm="rms").decoder.final_norm)["name"] == "rms"
    assert lm(final_norm=False).decoder.final_norm is None


def test_drop_path_grows_linearly_with_depth():
    model = lm(layers=4, drop_path=0.2, layer_overrides={"3": {"drop_path": 0.0}})
    rates = [nnblocks.spec_of(layer)["drop_path"] for layer in model.decoder.layers]
    assert rates == pytest.approx([0.05, 0.1, 0.15, 0.0])


def test_wrong_input_raises_shape_error_naming_the_model():
    model = lm()
    with pytest.raises(ShapeError, match="transformer_lm"):
        model(torch.rand(2, 5))
    with pytest.raises(ShapeError, match="transformer_lm"):
        model(torch.randint(3, V, (5,)))
    with pytest.raises(ShapeError, match="transformer_lm"):
        model.begin(torch.randint(3, V, (2, 5)))


def test_step_rejects_a_prefix_with_nothing_new():
    model = lm().eval()
    state = model.begin()
    prefix = torch.ones(2, 1, dtype=torch.long)
    _, state = model.step(prefix, state)
    with pytest.raises(ShapeError, match="cached"):
        model.step(prefix, state)


def test_a_user_block_without_cache_falls_back_to_recomputing():
    class PlainBlock(torch.nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.self_attention = nnblocks.build("mha", "attention", dim=dim, heads=heads)

        def forward(self, x, mask=None, causal=False, context=None, context_mask=None):
            return x + self.self_attention(x, mask=mask, causal=causal)

    model = lm(block=PlainBlock).eval()
    assert not model.decoder.cacheable
    out = nnblocks.generate.greedy(model, batch_size=2, max_new_tokens=4)
    assert out.shape == (2, 5)


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ({"dim": 30, "heads": 4}, "decoder.layers.0.self_attention"),
        (
            {"self_attention": {"name": "gqa", "kv_heads": 3}, "heads": 4},
            "decoder.layers.0.self_attention",
        ),
        (
            {
                "layer_overrides": {"1": {"self_attention": {"name": "gqa", "kv_heads": 3}}},
                "heads": 4,
            },
            "decoder.layers.1.self_attention",
        ),
    ],
    ids=["dim-heads", "kv-heads", "kv-heads-layer-1"],
)
def test_shapes_that_cannot_meet_fail_at_build_time_with_the_slot(options, where):
    with pytest.raises(SpecError) as info:
        lm(**options)
    assert where in str(info.value)


def test_a_part_of_the_wrong_kind_names_the_slot_and_the_kind():
    with pytest.raises(NNBlocksError) as info:
        lm(self_attention="layer")  # a norm in an attention slot
    message = str(info.value)
    assert "decoder.layers.0.self_attention" in message and "attention" in message
    with pytest.raises(NNBlocksError, match=r"`head`.*head|head.*`head`"):
        lm(head="mha")


def test_an_unknown_option_is_rejected_with_the_accepted_ones():
    with pytest.raises(SpecError) as info:
        lm(self_atention="mha")
    assert "self_atention" in str(info.value) and "self_attention" in str(info.value)


def test_a_new_attention_runs_beside_the_old_one_by_spec():
    model = lm(
        layer_overrides={
            "1": {"self_attention": {"name": "parallel", "branches": ["mha", "linear"]}}
        }
    )
    assert nnblocks.kind_of(model.get_submodule("decoder.layers.1.self_attention.branches.1")) == (
        "attention"
    )
    assert nnblocks.spec_of(model.decoder.layers[1].self_attention.branches[1])["name"] == "linear"
    assert model(torch.randint(3, V, (2, 6))).shape == (2, 6, V)


def test_the_reuse_audit_accepts_the_declared_tie():
    check = pytest.importorskip("nnblocks.check")
    report = check.audit_reuse(lm(), torch.randint(3, V, (2, 5)))
    assert report.ok, str(report)
