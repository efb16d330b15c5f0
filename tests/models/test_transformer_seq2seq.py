"""The encoder-decoder `transformer_seq2seq`: slots, masks, sharing, overrides, errors."""

import json

import pytest
import torch

import nnblocks
from nnblocks.errors import NNBlocksError, ShapeError, SpecError

V = 21


def s2s(**options):
    spec = {
        "name": "transformer_seq2seq",
        "vocab_size": V,
        "dim": 16,
        "heads": 2,
        "encoder_layers": 2,
        "decoder_layers": 2,
        "dropout": 0.0,
    }
    return nnblocks.build({**spec, **options})


def test_forward_shape_and_causal_target():
    model = s2s()
    src, tgt = torch.randint(3, V, (2, 9)), torch.randint(3, V, (2, 6))
    out = model(src, tgt)
    assert out.shape == (2, 6, V)
    changed = tgt.clone()
    changed[:, 4:] = torch.randint(3, V, (2, 2))
    torch.testing.assert_close(out[:, :4], model(src, changed)[:, :4])


def test_the_output_depends_on_the_source():
    model = s2s()
    tgt = torch.randint(3, V, (2, 5))
    a = model(torch.randint(3, V, (2, 7)), tgt)
    b = model(torch.randint(3, V, (2, 7)), tgt)
    assert not torch.allclose(a, b)


def test_source_padding_changes_nothing():
    """Appending padding to the source leaves every logit unchanged (keys masked in the
    encoder's self-attention and in the decoder's cross-attention)."""
    model = s2s().eval()
    src, tgt = torch.randint(3, V, (2, 6)), torch.randint(3, V, (2, 5))
    padded = torch.cat([src, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(src, tgt), model(padded, tgt), atol=1e-5, rtol=1e-5)


def test_slots():
    model = s2s()
    expected = {
        "src_embedding": "embedding",
        "tgt_embedding": "embedding",
        "src_position": "position",
        "encoder.layers.1.self_attention": "attention",
        "encoder.layers.0.feedforward": "feedforward",
        "decoder.layers.0.self_attention": "attention",
        "decoder.layers.1.cross_attention": "attention",
        "decoder.layers.1.cross_attention_norm": "norm",
        "decoder.final_norm": "norm",
        "head": "head",
    }
    for path, kind in expected.items():
        assert nnblocks.kind_of(model.get_submodule(path)) == kind, path
    assert model.encoder.layers[0].cross_attention is None


def test_shared_and_tied_embeddings_are_declared():
    model = s2s(share_embeddings=True)
    assert model.src_embedding is model.tgt_embedding
    assert model.head.weight is model.src_embedding.weight
    assert model.tied_parameters == [
        ("src_embedding.weight", "tgt_embedding.weight", "head.weight")
    ]
    separate = s2s(tie_embeddings=False)
    assert separate.tied_parameters == []
    assert separate.src_embedding.weight is not separate.tgt_embedding.weight


def test_separate_vocabularies():
    model = s2s(vocab_size=None, src_vocab_size=30, tgt_vocab_size=12)
    assert model(torch.randint(3, 30, (2, 5)), torch.randint(3, 12, (2, 4))).shape == (2, 4, 12)
    with pytest.raises(SpecError, match="share_embeddings"):
        s2s(vocab_size=None, src_vocab_size=30, tgt_vocab_size=12, share_embeddings=True)
    with pytest.raises(SpecError, match="vocab_size"):
        s2s(vocab_size=None)


def test_layer_overrides_name_their_stack():
    model = s2s(
        layer_overrides={
            "encoder.*": {"self_attention": {"name": "local", "window": 3}},
            "decoder.1": {"cross_attention": "gqa", "feedforward": "swiglu"},
        }
    )
    names = lambda stack, slot: [  # noqa: E731
        nnblocks.spec_of(getattr(layer, slot))["name"] for layer in stack.layers
    ]
    assert names(model.encoder, "self_attention") == ["local", "local"]
    assert names(model.decoder, "self_attention") == ["mha", "mha"]
    assert names(model.decoder, "cross_attention") == ["mha", "gqa"]
    assert names(model.decoder, "feedforward") == ["mlp", "swiglu"]
    src, tgt = torch.randint(3, V, (2, 7)), torch.randint(3, V, (2, 5))
    assert model(src, tgt).shape == (2, 5, V)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"0": {"norm": "rms"}}, "several stacks"),
        ({"middle.0": {"norm": "rms"}}, "unknown stack"),
        ({"encoder.0": {"cross_attention": "mha"}}, "no option `cross_attention`"),
        ({"decoder.2": {"norm": "rms"}}, "do not exist"),
        ({"decoder.0": "rms"}, "dict of layer options"),
        ({0: {"norm": "rms"}}, "quote numbers"),
    ],
)
def test_bad_overrides_fail_at_build_time(overrides, message):
    with pytest.raises(SpecError, match=message) as info:
        s2s(layer_overrides=overrides)
    assert f"layer_overrides.{next(iter(overrides))}" in str(info.value)


def test_later_overrides_win():
    model = s2s(layer_overrides={"decoder.*": {"norm": "rms"}, "decoder.1": {"norm": "layer"}})
    names = [nnblocks.spec_of(layer.feedforward_norm)["name"] for layer in model.decoder.layers]
    assert names == ["rms", "layer"]


def test_cross_attention_of_the_wrong_kind_names_the_slot():
    with pytest.raises(NNBlocksError) as info:
        s2s(cross_attention="mlp")
    assert "decoder.layers.0.cross_attention" in str(info.value)


def test_spec_round_trip():
    model = s2s(share_embeddings=True, position="rotary", norm_placement="post")
    again = nnblocks.build(json.loads(json.dumps(nnblocks.spec_of(model))))
    shapes = {n: p.shape for n, p in model.state_dict().items()}
    assert shapes == {n: p.shape for n, p in again.state_dict().items()}
    assert again.tied_parameters == model.tied_parameters


def test_wrong_inputs():
    model = s2s()
    with pytest.raises(ShapeError, match="transformer_seq2seq"):
        model(torch.rand(2, 5), torch.randint(3, V, (2, 4)))
    with pytest.raises(ShapeError, match="tgt_in"):
        model(torch.randint(3, V, (2, 5)), torch.randint(3, V, (2, 4, 1)))
    with pytest.raises(ShapeError, match="batch size"):
        model(torch.randint(3, V, (2, 5)), torch.randint(3, V, (3, 4)))
    with pytest.raises(ShapeError, match="source"):
        model.begin(None)


def test_the_state_follows_beam_reordering():
    model = s2s().eval()
    src = torch.randint(3, V, (2, 5))
    src[1, 3:] = 0
    state = model.begin(src)
    assert state["memory"].shape == (2, 5, 16) and state["memory_mask"].shape == (2, 5)
    _, state = model.step(torch.ones(2, 1, dtype=torch.long), state)
    swapped = nnblocks.generate.reorder_state(state, torch.tensor([1, 0]))
    prefix = torch.tensor([[1, 5], [1, 7]])
    a, _ = model.step(prefix[[1, 0]], swapped)
    b, _ = model.step(prefix, state)
    torch.testing.assert_close(a, b[[1, 0]], atol=1e-5, rtol=1e-5)


def test_the_reuse_audit_accepts_the_shared_embedding():
    check = pytest.importorskip("nnblocks.check")
    model = s2s(share_embeddings=True)
    report = check.audit_reuse(model, torch.randint(3, V, (2, 5)), torch.randint(3, V, (2, 4)))
    assert report.ok, str(report)
