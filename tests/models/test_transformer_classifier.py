"""The encoder-only `transformer_classifier`: pooling, tagging, padding, spec round trip."""

import json

import pytest
import torch

import nnblocks
from nnblocks.errors import ShapeError, SpecError

V, C = 17, 3


def clf(**options):
    spec = {
        "name": "transformer_classifier",
        "vocab_size": V,
        "num_classes": C,
        "dim": 16,
        "heads": 2,
        "layers": 2,
        "dropout": 0.0,
    }
    return nnblocks.build({**spec, **options})


@pytest.mark.parametrize("pool", ["mean", "first", "max"])
def test_pooled_classification(pool):
    model = clf(pool=pool)
    assert model(torch.randint(1, V, (4, 9))).shape == (4, C)


def test_tagging_gives_one_score_per_token():
    model = clf(pool="none")
    assert model(torch.randint(1, V, (4, 9))).shape == (4, 9, C)
    assert clf(pool=None).pool == "none"


def test_attention_is_bidirectional():
    model = clf(pool="none")
    tokens = torch.randint(1, V, (2, 6))
    changed = tokens.clone()
    changed[:, -1] = (changed[:, -1] % (V - 1)) + 1
    assert not torch.allclose(model(tokens)[:, 0], model(changed)[:, 0])


@pytest.mark.parametrize("pool", ["mean", "max", "none"])
def test_trailing_padding_changes_nothing(pool):
    model = clf(pool=pool).eval()
    tokens = torch.randint(1, V, (2, 6))
    padded = torch.cat([tokens, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    a, b = model(tokens), model(padded)
    if pool == "none":
        b = b[:, :6]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_an_all_padding_row_is_finite():
    model = clf()
    tokens = torch.randint(1, V, (2, 5))
    tokens[1] = 0
    assert torch.isfinite(model(tokens)).all()


def test_slots_and_round_trip():
    model = clf(position="alibi", layer_overrides={"0": {"self_attention": "local"}})
    assert model.position is None
    assert nnblocks.spec_of(model.encoder.layers[0].self_attention)["name"] == "local"
    assert nnblocks.kind_of(model.get_submodule("encoder.layers.1.self_attention")) == "attention"
    assert nnblocks.kind_of(model.head) == "head" and model.head.bias is not None
    assert model.tied_parameters == []
    again = nnblocks.build(json.loads(json.dumps(nnblocks.spec_of(model))))
    assert {n: p.shape for n, p in model.named_parameters()} == {
        n: p.shape for n, p in again.named_parameters()
    }


def test_bad_options():
    with pytest.raises(SpecError, match="pool"):
        clf(pool="sum")
    with pytest.raises(SpecError, match="num_classes"):
        clf(num_classes=0)
    with pytest.raises(SpecError, match="norm_placement"):
        clf(norm_placement="middle")
    with pytest.raises(SpecError, match="dropout"):
        clf(dropout=1.5)
    with pytest.raises(ShapeError, match="transformer_classifier"):
        clf()(torch.randn(2, 5))
