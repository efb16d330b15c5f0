"""One recipe run: the run folder, its files, and the same metrics for the same seed."""

import json

import pytest
import yaml

from nnblocks.experiment.recipe import load_recipe
from nnblocks.experiment.run import run_recipe


@pytest.fixture
def wine_recipe(tmp_path):
    path = tmp_path / "wine.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "wine_small",
                "seed": 3,
                "data": {"name": "wine"},
                "model": {"name": "mlp", "hidden": [16]},
                "train": {"epochs": 2, "lr": 0.01, "batch_size": 32, "threads": 1},
            }
        )
    )
    return path


def test_run_folder_holds_everything_needed(wine_recipe, tmp_path):
    recipe = load_recipe(wine_recipe)
    result = run_recipe(recipe, tmp_path / "run", progress=False)
    folder = tmp_path / "run"
    for name in (
        "recipe.yaml",
        "environment.json",
        "history.csv",
        "metrics.json",
        "loss_curves.png",
    ):
        assert (folder / name).is_file(), name
    assert (folder / "model" / "manifest.json").is_file()
    assert (folder / "model" / "data.json").is_file()  # fitted normalisation, for new inputs
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["params"] == result.metrics["params"] > 0
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["step_time"] > 0
    env = json.loads((folder / "environment.json").read_text())
    assert env["seed"] == 3 and "torch" in env["packages"]
    assert yaml.safe_load((folder / "recipe.yaml").read_text())["seed"] == 3
    lines = (folder / "history.csv").read_text().strip().splitlines()
    assert len(lines) == 3  # header + one row per epoch


def test_same_recipe_and_seed_give_the_same_metrics(wine_recipe, tmp_path):
    a = run_recipe(load_recipe(wine_recipe), tmp_path / "a", progress=False).metrics
    b = run_recipe(load_recipe(wine_recipe), tmp_path / "b", progress=False).metrics
    c = run_recipe(load_recipe(wine_recipe, ["seed=4"]), tmp_path / "c", progress=False).metrics
    keys = ("train_loss", "valid_loss", "test_loss", "test_accuracy")
    assert [a[k] for k in keys] == [b[k] for k in keys]
    assert a["train_loss"] != c["train_loss"]  # the seed matters


def test_saved_model_loads_and_matches(wine_recipe, tmp_path):
    import torch

    import nnblocks

    result = run_recipe(load_recipe(wine_recipe), tmp_path / "run", progress=False)
    loaded = nnblocks.load(tmp_path / "run" / "model")
    x = result.data.test.tensors[0][:5]
    result.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), result.model(x))


def test_a_relative_run_folder_is_not_nested(wine_recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_recipe(load_recipe(wine_recipe), "runs/rel", progress=False)
    assert (tmp_path / "runs" / "rel" / "history.csv").is_file()
    assert (tmp_path / "runs" / "rel" / "checkpoints" / "last").is_dir()
    assert not (tmp_path / "runs" / "rel" / "runs").exists()
