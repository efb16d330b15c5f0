"""`nnblocks train RECIPE --from RUN`: continue a run's model; the `continual:` section;
`train.fine_tune` in a recipe."""

from __future__ import annotations

import pytest
import torch

import nnblocks
from nnblocks.errors import CheckpointError, SpecError
from nnblocks.experiment.run import run_recipe
from nnblocks.train.continual import EWC, LwF, Rehearsal

WINE = {
    "name": "wine_small",
    "seed": 3,
    "data": {"name": "wine"},
    "model": {"name": "mlp", "hidden": [16]},
    "train": {"epochs": 2, "lr": 0.01, "batch_size": 32, "threads": 1, "checkpoint": False},
}
CONTINUAL = {"rehearsal": {"size": 40, "fraction": 0.25}, "ewc": {"lambda": 5.0}, "lwf": {}}


def test_a_run_continues_from_the_previous_run_with_its_state(tmp_path):
    first = run_recipe({**WINE, "continual": CONTINUAL}, tmp_path / "one", progress=False)
    assert sorted(p.name for p in (tmp_path / "one" / "continual").iterdir()) == [
        "ewc.safetensors",
        "rehearsal.safetensors",
        "state.json",
    ]
    start = {k: v.clone() for k, v in first.model.state_dict().items()}
    seen = {}
    recipe = {**WINE, "seed": 4, "continual": CONTINUAL, "train": {**WINE["train"], "epochs": 1}}

    class Spy(nnblocks.train.Callback):
        def before_fit(self, learn):
            seen["weights"] = {k: v.clone() for k, v in learn.model.state_dict().items()}
            seen["kinds"] = [
                type(cb) for cb in learn.cbs.callbacks if isinstance(cb, (Rehearsal, EWC, LwF))
            ]
            seen["buffer"] = len(learn.cbs.find(Rehearsal)[0].buffer)

    second = run_recipe(
        recipe,
        tmp_path / "two",
        progress=False,
        start_from=tmp_path / "one",
        extra_callbacks=[Spy()],
    )
    assert all(torch.equal(seen["weights"][k], start[k]) for k in start)  # started from run one
    assert sorted(k.__name__ for k in seen["kinds"]) == ["EWC", "LwF", "Rehearsal"]
    assert seen["buffer"] == 40
    assert len(second.learner.cbs.find(EWC)[0].penalties) == 2  # one per task, kept for a third


def test_from_a_folder_that_is_not_a_finished_run(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "recipe.yaml").write_text("seed: 0\n")
    with pytest.raises(CheckpointError, match=r"half.*not a finished run.*metrics\.json"):
        run_recipe(WINE, None, progress=False, start_from=tmp_path / "half")
    with pytest.raises(CheckpointError, match="no such folder"):
        run_recipe(WINE, None, progress=False, start_from=tmp_path / "nowhere")


def test_from_a_run_whose_model_does_not_fit_the_new_data(tmp_path):
    run_recipe(WINE, tmp_path / "one", progress=False)
    digits = {**WINE, "data": {"name": "digits", "flatten": True}}
    with pytest.raises(SpecError, match=r"in_features=13.*in_features=64"):
        run_recipe(digits, None, progress=False, start_from=tmp_path / "one")
    with pytest.raises(CheckpointError, match=r"rehearsal\.safetensors"):
        run_recipe(
            {**WINE, "continual": {"rehearsal": {}}},
            None,
            progress=False,
            start_from=tmp_path / "one",
        )


def test_a_recipe_can_fine_tune(tmp_path):
    recipe = {
        **WINE,
        "train": {**WINE["train"], "fine_tune": {"freeze_epochs": 1, "base_lr": 0.01}},
    }
    calls = []
    from nnblocks.train import Learner

    original = Learner.fine_tune

    def spy(self, *args, **kwargs):
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    Learner.fine_tune = spy
    try:
        result = run_recipe(recipe, None, progress=False)
    finally:
        Learner.fine_tune = original
    assert calls == [{"epochs": 2, "freeze_epochs": 1, "base_lr": 0.01}]
    assert result.metrics["epochs_run"] == 2  # the unfrozen phase: train.epochs
    with pytest.raises(SpecError, match=r"train\.fine_tune"):
        run_recipe(
            {**WINE, "train": {**WINE["train"], "fine_tune": {"lr": 1}}}, None, progress=False
        )
