"""Named seeds in a run, and `--seeds auto` driving an ablation (runs faked, no training)."""

import importlib
import json
import math

import pytest
import torch
import yaml

from nnblocks.errors import SpecError
from nnblocks.experiment.ablate import StatOptions, ablate
from nnblocks.experiment.run import run_recipe
from nnblocks.experiment.seeds import check_seed, seed_values, shift_seed
from nnblocks.train import Callback

ablate_mod = importlib.import_module("nnblocks.experiment.ablate")  # the module, not the function

RECIPE = {
    "name": "wine_seeds",
    "data": {"name": "wine"},
    "model": {"name": "mlp", "hidden": [8], "dropout": 0.5},
    "train": {"epochs": 1, "lr": 0.01, "batch_size": 32, "checkpoint": False},
}


def test_seed_values_and_shifts():
    assert seed_values(3) == {"init": 3, "data": 3, "dropout": 3}
    assert seed_values({"data": 2}) == {"init": 0, "data": 2, "dropout": 0}
    assert shift_seed(3, 2) == 5
    assert shift_seed(3, 2, "data") == {"init": 3, "data": 5, "dropout": 3}
    assert shift_seed({"init": 1, "data": 2, "dropout": 3}, 1) == {
        "init": 2,
        "data": 3,
        "dropout": 4,
    }
    for bad in ({"order": 1}, {"init": 1.5}, "1", True):
        with pytest.raises(SpecError, match="seed"):
            check_seed(bad)
    with pytest.raises(SpecError, match="vary_seed"):
        shift_seed(0, 1, "augment")


class _InitialWeights(Callback):
    def before_fit(self, learn):
        self.weight = torch.cat([p.detach().flatten() for p in learn.model.parameters()])


def _first_weight(seed):
    probe = _InitialWeights()
    result = run_recipe({**RECIPE, "seed": seed}, None, progress=False, extra_callbacks=[probe])
    return result, probe.weight


@pytest.mark.slow
def test_named_seeds_split_init_from_data_order():
    a, wa = _first_weight({"init": 0, "data": 0, "dropout": 0})
    b, wb = _first_weight({"init": 0, "data": 7, "dropout": 5})
    c, wc = _first_weight({"init": 1, "data": 0, "dropout": 0})
    assert torch.equal(wa, wb)  # the same init seed: the same initial weights
    assert not torch.equal(wa, wc)
    assert a.learner.seed == 0 and b.learner.seed == 7  # the data seed orders the batches
    _, wi = _first_weight(0)  # an int seed keeps today's single stream
    assert torch.equal(wi, wa)


@pytest.mark.slow
def test_data_seed_alone_changes_the_training_result():
    # (dropout 0.5 in the model: the dropout seed is held fixed here)
    same = [
        run_recipe(
            {**RECIPE, "seed": {"init": 0, "data": d, "dropout": 0}}, None, progress=False
        ).metrics["valid_loss"]
        for d in (0, 0, 1)
    ]
    assert same[0] == same[1] and same[0] != same[2]


def _fake_runs(effects, noise):
    """A fake `nnblocks train`: writes metrics.json with value = 0.8 + effect + noise(seed)."""

    def run_one(recipe_path, cell, threads, on_beat=None, every=10.0):
        seed = cell.seed
        value = (
            0.8 + effects[cell.variant] + noise[cell.variant] * math.sin(1.7 * seed + cell.variant)
        )
        value += 0.02 * math.cos(seed)  # a seed effect shared by every variant: pairs remove it
        cell.folder.mkdir(parents=True, exist_ok=True)
        (cell.folder / "metrics.json").write_text(json.dumps({"test_accuracy": value}))
        return None

    return run_one


def _recipe_file(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**RECIPE, "seed": 0}))
    return path


def test_seeds_auto_adds_seeds_only_to_undecided_variants(tmp_path, monkeypatch):
    monkeypatch.delenv("NNBLOCKS_PLUGINS", raising=False)
    # baseline; clearly better; a small difference buried in noise
    monkeypatch.setattr(
        ablate_mod, "_run_one", _fake_runs([0.0, 0.05, 0.002], [0.001, 0.001, 0.01])
    )
    result = ablate(
        _recipe_file(tmp_path),
        ["model.norm=batch,layer,rms"],
        seeds="auto",
        max_seeds=9,
        folder=tmp_path / "abl",
    )
    counts = [len(r.values) for r in result.rows]
    assert counts == [9, 3, 9]  # decided at the first look: no more seeds spent on it
    assert result.rows[1].comparison.significant is True
    assert result.rows[2].comparison.test == "paired t"  # the baseline ran the same seeds
    note = result.warnings[0]
    assert "looks at [3, 5, 7, 9]" in note and "alpha/4=0.0125" in note
    assert result.rows[1].comparison.alpha == pytest.approx(0.0125)
    table = (tmp_path / "abl" / "table.md").read_text()
    assert "paired t" in table and "better: significant" in table


def test_fixed_seeds_through_the_run_table(tmp_path, monkeypatch):
    monkeypatch.delenv("NNBLOCKS_PLUGINS", raising=False)
    monkeypatch.setattr(
        ablate_mod, "_run_one", _fake_runs([0.0, 0.0, -0.03], [0.004, 0.004, 0.001])
    )
    out = tmp_path / "abl"
    result = ablate(
        _recipe_file(tmp_path),
        ["model.norm=batch,layer,rms"],
        seeds=5,
        folder=out,
        options=StatOptions(adjust="bonferroni"),
    )
    assert [len(r.values) for r in result.rows] == [5, 5, 5]
    worse = result.rows[2].comparison
    assert worse.significant and worse.adjustment == "bonferroni"
    assert "worse: significant (bonferroni p=" in (out / "table.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"][2]["comparison"]["test"] == "paired t"
    # Ablating again reuses every run (same fingerprints): the fake is not even called.
    monkeypatch.setattr(ablate_mod, "_run_one", None)
    again = ablate(
        _recipe_file(tmp_path),
        ["model.norm=batch,layer,rms"],
        seeds=5,
        folder=out,
        options=StatOptions(adjust="bonferroni"),
    )
    assert [r.values for r in again.rows] == [r.values for r in result.rows]
    with pytest.raises(SpecError, match="different recipe"):
        ablate(
            _recipe_file(tmp_path),
            ["model.norm=batch,layer,rms"],
            seeds=5,
            folder=out,
            overrides=["train.epochs=2"],
        )
