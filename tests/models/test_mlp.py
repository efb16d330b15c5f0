"""Model `mlp`: numeric and categorical inputs, slots, specs and bad input."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import nnblocks
from nnblocks.errors import NNBlocksError, ShapeError, SpecError
from nnblocks.models.mlp import embedding_size


def make(**options):
    spec = {"name": "mlp", "in_features": 5, "num_classes": 3, "hidden": [16, 8], **options}
    return nnblocks.build(spec, "model")


def test_embedding_size_follows_the_fastai_rule():
    assert [embedding_size(n) for n in (2, 10, 100, 1000)] == [
        round(1.6 * n**0.56) for n in (2, 10, 100, 1000)
    ]
    assert embedding_size(10**7) == 600  # capped
    sizes = [embedding_size(n) for n in range(1, 5000, 7)]
    assert sizes == sorted(sizes)


def test_numeric_and_categorical_inputs():
    model = make(categories=[4, 50])
    widths = [e.weight.shape for e in model.embeddings]
    assert widths == [(4, embedding_size(4)), (50, embedding_size(50))]
    assert model.layers[0].linear.in_features == 5 + embedding_size(4) + embedding_size(50)
    out = model(
        torch.randn(7, 5), torch.stack([torch.randint(0, 4, (7,)), torch.randint(0, 50, (7,))], 1)
    )
    assert out.shape == (7, 3)


def test_categorical_codes_change_the_output_and_get_gradients():
    model = make(categories=[6], hidden=[8], activation="tanh").eval()  # no dead units
    x_num = torch.randn(1, 5).repeat(6, 1)
    x_cat = torch.tensor([[0], [0], [1], [1], [5], [5]])
    out = model(x_num, x_cat)
    assert torch.allclose(out[0], out[1]) and not torch.allclose(out[0], out[2])
    out.sum().backward()
    grad = model.embeddings[0].weight.grad
    assert grad[[0, 1, 5]].abs().sum(1).gt(0).all() and not grad[[2, 3, 4]].any()


def test_categories_only_and_regression_head():
    model = make(in_features=0, num_classes=None, out_features=2, categories=[3, 3])
    assert model(None, torch.randint(0, 3, (4, 2))).shape == (4, 2)
    assert model(torch.empty(4, 0), torch.randint(0, 3, (4, 2))).shape == (4, 2)


def test_explicit_embedding_sizes_and_slot_specs():
    model = make(
        categories=[4, 9],
        embedding_sizes=[3, 2],
        norm={"name": "layer", "eps": 1e-6},
        activation="gelu",
        dropout=0.2,
    )
    assert [e.weight.shape[1] for e in model.embeddings] == [3, 2]
    assert [nnblocks.spec_of(layer.norm)["name"] for layer in model.layers] == ["layer", "layer"]
    assert all(nnblocks.spec_of(layer.activation)["name"] == "gelu" for layer in model.layers)
    assert all(layer.linear.bias is None for layer in model.layers)  # the norm re-centres


def test_default_norm_is_batch_norm_and_none_removes_it():
    model = make()
    assert [nnblocks.spec_of(layer.norm)["name"] for layer in model.layers] == ["batch", "batch"]
    plain = make(norm=None)
    assert all(layer.norm is None and layer.linear.bias is not None for layer in plain.layers)
    assert not [m for m in plain.modules() if nnblocks.kind_of(m) == "norm"]


def test_gradients_reach_every_parameter():
    model = make(categories=[4])
    model(torch.randn(6, 5), torch.randint(0, 4, (6, 1))).logsumexp(-1).sum().backward()
    assert all(p.grad is not None and p.grad.any() for p in model.parameters())


def test_spec_round_trip_rebuilds_the_same_architecture():
    model = make(categories=[4, 7], norm="rms", dropout=0.1)
    spec = nnblocks.spec_of(model)
    assert json.loads(json.dumps(spec)) == spec
    # `mlp` is also a feedforward part, so a model spec is built with kind="model" (as
    # recipes and checkpoints do).
    again = nnblocks.build(spec, "model")
    assert nnblocks.spec_of(again) == spec
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in again.state_dict().items()} == shapes


def test_unknown_slot_fails_at_build_naming_it():
    with pytest.raises(SpecError, match=r"unknown argument `hiden` \(did you mean `hidden`"):
        make(hiden=[4])


@pytest.mark.parametrize("slot, wrong", [("norm", "relu"), ("activation", "norm/batch")])
def test_wrong_kind_in_a_slot_names_the_slot_path_and_kind(slot, wrong):
    spec = {"name": "mlp", "in_features": 4, "num_classes": 2, slot: wrong}
    with pytest.raises(SpecError) as info:
        nnblocks.build(spec, "model", at="model")
    assert f"model.layers.0.{slot}" in str(info.value)


def test_wrong_kind_in_the_embedding_slot():
    spec = {"name": "mlp", "in_features": 4, "num_classes": 2, "categories": [3]}
    with pytest.raises(SpecError, match=r"model\.embeddings\.0"):
        nnblocks.build({**spec, "embedding": "layer"}, "model", at="model")


@pytest.mark.parametrize(
    "options, match",
    [
        ({"num_classes": None}, "exactly one of `num_classes`"),
        ({"out_features": 1}, "exactly one of `num_classes`"),
        ({"in_features": -1}, "in_features.*>= 0"),
        ({"categories": [3, 0]}, "categories"),
        ({"categories": [3], "embedding_sizes": [2, 2]}, "one width per categorical column"),
        ({"hidden": [8, "wide"]}, "hidden"),
        ({"in_features": 0}, "no inputs"),
    ],
)
def test_bad_options_fail_at_build(options, match):
    with pytest.raises(SpecError, match=match):
        make(**options)


def test_bad_inputs_raise_shape_error_naming_the_model_and_shape():
    model = make(categories=[4, 4])
    codes = torch.randint(0, 4, (2, 2))
    with pytest.raises(ShapeError, match=r"mlp.*x_num.*\[B, 5\].*\(2, 4\)"):
        model(torch.randn(2, 4), codes)
    with pytest.raises(ShapeError, match=r"mlp.*x_cat.*\[B, 2\].*None"):
        model(torch.randn(2, 5))
    with pytest.raises(ShapeError, match=r"x_cat.*float32"):
        model(torch.randn(2, 5), codes.float())
    with pytest.raises(ShapeError, match=r"x_cat.*\(2, 3\)"):
        model(torch.randn(2, 5), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ShapeError, match="same batch size"):
        model(torch.randn(3, 5), codes)
    with pytest.raises(ShapeError, match=r"x_cat.*\[B, 0\]"):
        make()(torch.randn(2, 5), codes)


def test_unseen_category_code_fails_with_an_nnblocks_error():
    model = make(categories=[4])
    with pytest.raises(NNBlocksError):
        model(torch.randn(2, 5), torch.tensor([[1], [4]]))


@pytest.mark.slow
def test_learns_sklearn_wine():
    datasets = pytest.importorskip("sklearn.datasets")
    wine = datasets.load_wine()
    x = torch.tensor(wine.data, dtype=torch.float32)
    y = torch.tensor(wine.target)
    perm = torch.randperm(len(y))
    train, test = perm[:130], perm[130:]
    mean, std = x[train].mean(0), x[train].std(0)  # statistics of the training split only
    x = (x - mean) / std
    model = make(in_features=13, hidden=[32])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):
        for idx in train[torch.randperm(len(train))].split(32):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x[test]).argmax(-1) == y[test]).float().mean()
    assert accuracy > 0.9


RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "mlp_tabular.yaml"


def test_recipe_model_builds_with_the_datasets_model_args():
    recipe = yaml.safe_load(RECIPE.read_text())
    assert recipe["data"]["name"] == "wine"
    model = nnblocks.build(recipe["model"], "model", at="model", num_classes=3, in_features=13)
    assert model(torch.randn(4, 13)).shape == (4, 3)


@pytest.mark.slow
def test_recipe_runs_a_batch_of_its_dataset():
    recipe = yaml.safe_load(RECIPE.read_text())
    bundle = nnblocks.build(recipe["data"], "dataset")
    model = nnblocks.build(recipe["model"], "model", **bundle.task.model_args)
    x, y = bundle.train[torch.arange(16)]
    assert torch.isfinite(bundle.task.loss(model(x), y))


def test_save_and_load_rebuild_the_model_kind(tmp_path):
    pytest.importorskip("nnblocks.io")
    model = make(categories=[5, 3])
    model(torch.randn(8, 5), torch.randint(0, 3, (8, 2)))  # move the running statistics
    model.eval()
    nnblocks.save(model, tmp_path / "mlp")
    loaded = nnblocks.load(tmp_path / "mlp")  # `mlp` is ambiguous by name; the kind is saved
    x_num, x_cat = torch.randn(4, 5), torch.randint(0, 3, (4, 2))
    with torch.no_grad():
        assert torch.equal(loaded(x_num, x_cat), model(x_num, x_cat))
