"""Pickle files are refused by default, and only ever read with the restricted unpickler."""

from __future__ import annotations

import shutil

import pytest
import torch

import nnblocks
from nnblocks.errors import CheckpointError
from nnblocks.io import CONFIG_NAME as SPEC_NAME
from nnblocks.io import read_pickle_weights
from nnblocks.io.pickle_policy import is_pickle_path


def pickle_folder(tmp_path, model, obj=None):
    """A folder with spec.json and weights in a .pt file (an older or foreign format)."""
    folder = tmp_path / "legacy"
    saved = nnblocks.save(model, tmp_path / "saved")
    folder.mkdir()
    shutil.copy(saved / SPEC_NAME, folder / SPEC_NAME)
    torch.save(model.state_dict() if obj is None else obj, folder / "weights.pt")
    return folder


@pytest.mark.parametrize("name", ["a.pt", "a.PTH", "pytorch_model.bin", "a.pkl", "a.ckpt"])
def test_pickle_suffixes_are_recognised(name):
    assert is_pickle_path(name)
    assert not is_pickle_path("model.safetensors")


def test_pt_file_is_refused_without_trust(tmp_path, tiny_model, hostile_pickle):
    payload, marker = hostile_pickle
    folder = pickle_folder(tmp_path, tiny_model)
    (folder / "weights.pt").write_bytes(payload)
    for target in (folder, folder / "weights.pt"):
        with pytest.raises(
            CheckpointError, match=r"refusing to load `.*weights\.pt`.*trust_pickle"
        ):
            nnblocks.load(target)
    with pytest.raises(CheckpointError, match="refusing"):
        read_pickle_weights(folder / "weights.pt")
    assert not marker.exists()


def test_trusted_state_dict_loads_with_the_restricted_unpickler(tmp_path, tiny_model):
    folder = pickle_folder(tmp_path, tiny_model)
    loaded = nnblocks.load(folder, trust_pickle=True)
    assert loaded.head.weight is loaded.embed.weight
    for name, t in tiny_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], t), name


def test_trusted_nested_state_dict_is_found(tmp_path, tiny_model):
    obj = {"state_dict": tiny_model.state_dict(), "epoch": 3}
    loaded = nnblocks.load(
        pickle_folder(tmp_path, tiny_model, obj) / "weights.pt", trust_pickle=True
    )
    assert torch.equal(loaded.mix.weight, tiny_model.mix.weight)


class _ZipPayload:
    """torch.save of this writes a zip whose pickle calls exec when fully unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"__import__('pathlib').Path({self.marker!r}).write_text('pwned')",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("container", ["raw_pickle", "torch_save_zip"])
def test_trust_never_falls_back_to_a_full_unpickle(tmp_path, tiny_model, hostile_pickle, container):
    payload, marker = hostile_pickle
    folder = pickle_folder(tmp_path, tiny_model)
    if container == "raw_pickle":
        (folder / "weights.pt").write_bytes(payload)
    else:
        torch.save({"w": torch.ones(1), "evil": _ZipPayload(marker)}, folder / "weights.pt")
    with pytest.raises(
        CheckpointError, match="refused by the restricted unpickler.*never falls back"
    ):
        nnblocks.load(folder, trust_pickle=True)
    assert not marker.exists()


def test_trusted_pickle_without_spec_explains_how_to_convert(tmp_path, tiny_model):
    path = tmp_path / "weights.pt"
    torch.save(tiny_model.state_dict(), path)
    with pytest.raises(CheckpointError, match="config.json` is missing.*read_pickle_weights"):
        nnblocks.load(path, trust_pickle=True)
    state = read_pickle_weights(path, trust_pickle=True)
    assert torch.equal(state["mix.weight"], tiny_model.mix.weight)


def test_trusted_pickle_that_is_not_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save([torch.ones(2)], path)
    with pytest.raises(CheckpointError, match="expected a state dict"):
        read_pickle_weights(path, trust_pickle=True)
