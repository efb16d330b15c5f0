"""Training checkpoints in the saved-model format, one weight loader, training.json checks."""

from __future__ import annotations

import json

import pytest
import torch

import nnblocks
from nnblocks.data import TensorData
from nnblocks.errors import CheckpointError
from nnblocks.io import CONFIG_NAME, WEIGHTS_NAME, write_manifest
from nnblocks.train import Learner, load_model_weights
from nnblocks.train.checkpoint import STATE_FILE, TRAINING_FILE, read_training_document


@pytest.fixture
def checkpoint(tmp_path, tiny_model):
    tokens = torch.randint(0, 13, (16, 5))
    data = TensorData(tokens, tokens, n_inputs=1)

    def loss(out, y):
        return torch.nn.functional.cross_entropy(out.flatten(0, 1), y.flatten())

    learn = Learner(tiny_model, (data, data), loss=loss, batch_size=8, progress=False, audit="off")
    learn.fit(1)
    return learn.save_checkpoint(tmp_path / "ck"), learn


def test_checkpoint_holds_the_saved_model_format_and_loads_as_a_model(checkpoint):
    folder, learn = checkpoint
    names = set(json.loads((folder / "manifest.json").read_text())["files"])
    assert names == {WEIGHTS_NAME, CONFIG_NAME, STATE_FILE, TRAINING_FILE}
    model = nnblocks.load(folder)  # one format: the inference loader reads a checkpoint
    for name, t in learn.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], t), name


def _edit_training(folder, change):
    doc = json.loads((folder / TRAINING_FILE).read_text())
    change(doc)
    (folder / TRAINING_FILE).write_text(json.dumps(doc))
    write_manifest(folder, [WEIGHTS_NAME, CONFIG_NAME, STATE_FILE, TRAINING_FILE])


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda d: d.update(epoch=-1), "`epoch` must be an integer >= 0"),
        (lambda d: d.update(seed="zero"), "`seed` must be an integer"),
        (lambda d: d.update(world_size=0), "`world_size` must be an integer >= 1"),
        (lambda d: d.update(iter=True), "`iter` must be an integer"),
        (lambda d: d.pop("rng"), "required field `rng` is missing"),
        (lambda d: d.update(rng=[]), "`rng` must be a non-empty list"),
        (lambda d: d["optimizer"].pop("param_groups"), "`optimizer` must be"),
        (lambda d: d.update(history={}), "`history` must be a list"),
        (lambda d: d.update(epoch=d["n_epochs"] + 1), "`epoch` must be at most n_epochs"),
    ],
)
def test_training_json_fields_are_validated(checkpoint, change, field):
    folder, _ = checkpoint
    _edit_training(folder, change)
    with pytest.raises(CheckpointError, match="training.json`: .*" + field.replace("[", r"\[")):
        read_training_document(folder)


def test_checkpoint_weights_that_do_not_fit_name_the_tensor(checkpoint):
    folder, _ = checkpoint
    other = nnblocks.build({"name": "io_test_lm", "dim": 4})
    with pytest.raises(CheckpointError, match=r"tensor `scale` expected shape \[4\], found \[8\]"):
        load_model_weights(other, folder)
