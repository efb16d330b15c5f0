"""Recipes: loading, dotted overrides, and errors that name the key before training starts."""

import pytest
import yaml

from nnblocks.errors import NNBlocksError, SpecError
from nnblocks.experiment.recipe import apply_overrides, get_key, load_recipe, parse_override
from nnblocks.experiment.run import check_recipe


@pytest.fixture
def recipe_file(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "seed": 1,
                "data": {"name": "wine"},
                "model": {"name": "mlp", "hidden": [16], "norm": "batch"},
                "train": {"epochs": 1, "lr": 0.01, "batch_size": 16},
            }
        )
    )
    return path


def test_override_types_are_read_as_yaml(recipe_file):
    recipe = load_recipe(recipe_file, ["train.lr=3e-3", "model.hidden=[8, 8]", "model.norm=rms"])
    assert get_key(recipe, "train.lr") == pytest.approx(0.003)
    assert get_key(recipe, "model.hidden") == [8, 8]
    assert get_key(recipe, "model.norm") == "rms"
    assert recipe["name"] == "r"


def test_a_named_spec_gains_options(recipe_file):
    recipe = load_recipe(recipe_file, ["model.norm.eps=0.001"])
    assert recipe["model"]["norm"] == {"name": "batch", "eps": 0.001}


def test_unknown_train_key_names_it_and_the_known_keys(recipe_file):
    with pytest.raises(SpecError) as err:
        load_recipe(recipe_file, ["train.batchsize=8"])
    text = str(err.value)
    assert "train.batchsize" in text and "Did you mean `batch_size`" in text and "epochs" in text


def test_wrong_type_is_refused(recipe_file):
    with pytest.raises(SpecError, match="expected int") as err:
        load_recipe(recipe_file, ["train.epochs=many"])
    assert "train.epochs" in str(err.value)


def test_unknown_top_level_key(recipe_file):
    with pytest.raises(SpecError, match="unknown key `modle`.*Did you mean `model`"):
        load_recipe(recipe_file, ["modle.dim=3"])


def test_override_without_equals_is_refused():
    with pytest.raises(SpecError, match="KEY=VALUE"):
        parse_override("train.lr")


def test_unknown_model_key_fails_at_check_before_training(recipe_file):
    recipe = load_recipe(recipe_file, ["model.hiden=[4]"])
    with pytest.raises(NNBlocksError) as err:
        check_recipe(recipe)
    text = str(err.value)
    assert "hiden" in text and "hidden" in text  # the key and the accepted arguments


def test_wrong_kind_in_a_slot_fails_at_check(recipe_file):
    recipe = load_recipe(recipe_file, ["model.norm=mha"])
    with pytest.raises(NNBlocksError, match="norm"):
        check_recipe(recipe)


def test_list_index_override():
    recipe = {"model": {"name": "x", "layers": ["a", "b"]}}
    out = apply_overrides(recipe, [("model.layers.1", "c")])
    assert out["model"]["layers"] == ["a", "c"]
    assert recipe["model"]["layers"] == ["a", "b"]  # the original is untouched
    with pytest.raises(SpecError, match="index it with 0..1"):
        apply_overrides(recipe, [("model.layers.5", "c")])


def test_missing_recipe_file_is_named(tmp_path):
    with pytest.raises(SpecError, match="nope.yaml"):
        load_recipe(tmp_path / "nope.yaml")


def test_every_shipped_recipe_is_valid():
    from pathlib import Path

    from nnblocks.experiment.recipe import validate_recipe

    root = Path(__file__).resolve().parents[2] / "recipes"
    files = sorted(root.glob("*.yaml"))
    assert files
    for path in files:
        recipe = yaml.safe_load(path.read_text())
        validate_recipe(recipe, where=str(path))


def test_the_optimizer_dict_form_reaches_the_optimizer(recipe_file, tmp_path):
    from nnblocks.experiment.run import run_recipe

    opt = "train.opt={name: sgd, momentum: 0.5, nesterov: true}"
    recipe = load_recipe(recipe_file, [opt, "train.schedule=constant"])  # one_cycle moves momentum
    result = run_recipe(recipe, tmp_path / "run", progress=False)
    group = result.learner.opt.param_groups[0]
    assert type(result.learner.opt).__name__ == "SGD"
    assert group["momentum"] == 0.5 and group["nesterov"] is True


def test_checkpoints_every_n_minutes_save_mid_epoch(tmp_path):
    import torch
    import torch.nn.functional as F

    from nnblocks.data import TensorData
    from nnblocks.train import Callback, Learner, SaveCheckpoint

    seen = []

    class Look(Callback):
        order = 85  # after the checkpoint callback

        def after_batch(self, learn):
            if learn.training and learn.epoch == 0:
                seen.append((learn.iter, (tmp_path / "ck" / "last").is_dir()))

    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    saver = SaveCheckpoint(tmp_path / "ck", every_n_minutes=1e-9)
    learn = Learner(
        torch.nn.Linear(4, 2),
        (TensorData(x, y), None),
        loss=F.cross_entropy,
        batch_size=8,
        progress=False,
        callbacks=[saver, Look()],
        audit="off",
    )
    learn.fit(1)
    assert seen[0] == (0, True)  # saved after the first batch, long before the epoch ended
    with pytest.raises(NNBlocksError, match="every_n_minutes"):
        SaveCheckpoint(tmp_path / "ck", every_n_minutes=0)
