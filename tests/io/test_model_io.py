"""nnblocks.save / nnblocks.load: round trips, corrupt folders, missing parts, failed saves."""

from __future__ import annotations

import errno
import json
import os

import pytest
import torch
from torch import nn

import nnblocks
from nnblocks.errors import CheckpointError, NNBlocksError
from nnblocks.io import (
    CARD_NAME,
    CONFIG_NAME,
    MANIFEST_NAME,
    WEIGHTS_NAME,
    check_file,
    write_manifest,
)

# The files of a saved model (format 2: config.json replaced spec.json, and a model card).
SAVED = sorted([CARD_NAME, CONFIG_NAME, MANIFEST_NAME, WEIGHTS_NAME])
SPEC_NAME = CONFIG_NAME


def outputs(model: nn.Module) -> torch.Tensor:
    tokens = torch.arange(12).reshape(2, 6) % 13
    with torch.no_grad():
        return model.eval()(tokens)


def edit_spec(folder, change) -> None:
    """Rewrite config.json (and the manifest, so only the edit is tested)."""
    doc = json.loads((folder / SPEC_NAME).read_text())
    change(doc)
    (folder / SPEC_NAME).write_text(json.dumps(doc))
    write_manifest(folder, [SPEC_NAME, WEIGHTS_NAME])


def test_round_trip_rebuilds_model_with_tied_weights(tmp_path, tiny_model):
    folder = nnblocks.save(tiny_model, tmp_path / "ckpt")
    assert sorted(os.listdir(folder)) == SAVED
    loaded = nnblocks.load(folder)
    assert type(loaded) is type(tiny_model) and loaded is not tiny_model
    assert not loaded.training
    assert loaded.head.weight is loaded.embed.weight  # the tie is rebuilt, not two copies
    for (name, a), (_, b) in zip(tiny_model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    torch.testing.assert_close(outputs(loaded), outputs(tiny_model), rtol=0, atol=0)
    assert nnblocks.spec_of(loaded) == nnblocks.spec_of(tiny_model)


def test_tied_weight_is_stored_once(tmp_path, tiny_model):
    folder = nnblocks.save(tiny_model, tmp_path)
    stored = check_file(folder / WEIGHTS_NAME).entries
    assert len(stored) == len(tiny_model.state_dict()) - 1
    assert ("embed.weight" in stored) != ("head.weight" in stored)


def test_spec_json_lists_parts_with_their_package(tmp_path, tiny_model):
    doc = json.loads((nnblocks.save(tiny_model, tmp_path) / SPEC_NAME).read_text())
    assert doc["kind"] == "model"
    assert doc["nnblocks_version"] == nnblocks.__version__
    assert doc["spec"] == nnblocks.spec_of(tiny_model)
    package = type(tiny_model).__module__.split(".")[0]
    assert doc["parts"] == [
        {"kind": "model", "name": "io_test_lm", "source": package},
        {"kind": "norm", "name": "io_test_norm", "source": package},
    ]


def test_half_precision_model_comes_back_in_half(tmp_path, tiny_model):
    half = tiny_model.half()
    loaded = nnblocks.load(nnblocks.save(half, tmp_path))
    assert loaded.mix.weight.dtype == torch.float16
    assert torch.equal(loaded.mix.weight, half.mix.weight)


def test_save_overwrites_an_existing_checkpoint(tmp_path, tiny_model):
    nnblocks.save(nnblocks.build({"name": "io_test_lm", "dim": 8}), tmp_path)
    nnblocks.save(tiny_model, tmp_path)
    torch.testing.assert_close(
        outputs(nnblocks.load(tmp_path)), outputs(tiny_model), rtol=0, atol=0
    )
    assert sorted(os.listdir(tmp_path)) == SAVED


def test_model_not_built_from_a_spec_is_refused_before_writing(tmp_path):
    with pytest.raises(CheckpointError, match="not built from a spec"):
        nnblocks.save(nn.Linear(2, 2), tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()


def test_spec_holding_a_class_is_refused(tmp_path):
    model = nnblocks.build(
        {"name": "io_test_lm", "norm": nnblocks.get_part("norm", "io_test_norm")}
    )
    with pytest.raises(CheckpointError, match=r"`spec\.norm` holds type"):
        nnblocks.save(model, tmp_path)


def test_flipped_data_byte_is_caught_by_the_manifest(tmp_path, tiny_model):
    folder = nnblocks.save(tiny_model, tmp_path)
    raw = bytearray((folder / WEIGHTS_NAME).read_bytes())
    raw[-3] ^= 0x01  # inside the last tensor's data: safetensors itself cannot notice
    (folder / WEIGHTS_NAME).write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"model\.safetensors` is corrupt: its SHA-256"):
        nnblocks.load(folder)


def test_flipped_header_byte_is_caught_by_the_manifest(tmp_path, tiny_model):
    folder = nnblocks.save(tiny_model, tmp_path)
    raw = bytearray((folder / WEIGHTS_NAME).read_bytes())
    raw[raw.index(b'"shape"') + 1] ^= 0x20  # "shape" -> "Shape"
    (folder / WEIGHTS_NAME).write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"model\.safetensors` is corrupt"):
        nnblocks.load(folder)


def test_missing_manifest_is_refused(tmp_path, tiny_model):
    folder = nnblocks.save(tiny_model, tmp_path)
    (folder / MANIFEST_NAME).unlink()
    with pytest.raises(CheckpointError, match=r"manifest\.json` is missing"):
        nnblocks.load(folder)


def test_manifest_must_cover_the_weights(tmp_path, tiny_model):
    folder = nnblocks.save(tiny_model, tmp_path)
    write_manifest(folder, [SPEC_NAME])  # a hostile manifest vouching for the spec only
    with pytest.raises(CheckpointError, match="does not list `model.safetensors`"):
        nnblocks.load(folder)


def test_pickle_posing_as_weights_with_a_matching_manifest_runs_no_code(
    tmp_path, tiny_model, hostile_pickle
):
    payload, marker = hostile_pickle
    folder = nnblocks.save(tiny_model, tmp_path)
    (folder / WEIGHTS_NAME).write_bytes(payload)
    write_manifest(folder, [SPEC_NAME, WEIGHTS_NAME])
    with pytest.raises(CheckpointError, match="pickle"):
        nnblocks.load(folder)
    assert not marker.exists()


def test_missing_part_names_the_package_to_install(tmp_path, tiny_model):
    folder = nnblocks.save(tiny_model, tmp_path)

    def rename(doc):
        doc["spec"]["norm"] = "fancy_norm"
        doc["parts"][1] = {"kind": "norm", "name": "fancy_norm", "source": "nnblocks_fancy"}

    edit_spec(folder, rename)
    with pytest.raises(CheckpointError, match="norm part `fancy_norm`") as info:
        nnblocks.load(folder)
    assert "install `nnblocks_fancy`" in str(info.value)
    assert isinstance(info.value, NNBlocksError)


def test_weights_that_do_not_fit_the_spec_are_refused(tmp_path, tiny_model):
    folder = nnblocks.save(tiny_model, tmp_path)
    edit_spec(folder, lambda doc: doc["spec"].update(dim=4))
    with pytest.raises(CheckpointError, match=r"model\.safetensors` does not fit"):
        nnblocks.load(folder)


def test_strict_false_loads_what_fits(tmp_path, tiny_model):
    folder = nnblocks.save(tiny_model, tmp_path)
    state = tiny_model.state_dict()
    del state["mix.bias"]
    nnblocks.io.write_tensors(folder / WEIGHTS_NAME, state)
    write_manifest(folder, [SPEC_NAME, WEIGHTS_NAME])
    with pytest.raises(CheckpointError, match="mix.bias"):
        nnblocks.load(folder)
    loaded = nnblocks.load(folder, strict=False)
    assert torch.equal(loaded.mix.weight, tiny_model.mix.weight)


def test_unbuildable_spec_is_a_checkpoint_error(tmp_path, tiny_model):
    folder = nnblocks.save(tiny_model, tmp_path)
    edit_spec(folder, lambda doc: doc["spec"].update(no_such_option=1))
    with pytest.raises(CheckpointError, match="could not be rebuilt.*no_such_option"):
        nnblocks.load(folder)


def test_missing_folder_and_lone_file_are_refused(tmp_path, tiny_model):
    with pytest.raises(CheckpointError, match="is missing"):
        nnblocks.load(tmp_path / "nope")
    folder = nnblocks.save(tiny_model, tmp_path)
    with pytest.raises(CheckpointError, match="read_tensors"):
        nnblocks.load(folder / WEIGHTS_NAME)


def test_failed_save_leaves_the_old_checkpoint_loadable(tmp_path, tiny_model, monkeypatch):
    folder = nnblocks.save(tiny_model, tmp_path)
    before = {name: (folder / name).read_bytes() for name in os.listdir(folder)}

    def broken_replace(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(CheckpointError, match="No space left"):
        nnblocks.save(nnblocks.build({"name": "io_test_lm", "dim": 8}), folder)
    monkeypatch.undo()
    assert {name: (folder / name).read_bytes() for name in os.listdir(folder)} == before
    torch.testing.assert_close(outputs(nnblocks.load(folder)), outputs(tiny_model), rtol=0, atol=0)


def _read_only_error(monkeypatch, folder):
    """Simulate a read-only folder where chmod cannot (root ignores permissions)."""
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and os.path.dirname(os.fspath(path)) == os.fspath(folder):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)


@pytest.mark.parametrize("how", ["chmod", "simulated"])
def test_save_into_read_only_folder_keeps_old_files(tmp_path, tiny_model, monkeypatch, how):
    folder = nnblocks.save(tiny_model, tmp_path / "ckpt")
    before = {name: (folder / name).read_bytes() for name in os.listdir(folder)}
    if how == "chmod":
        folder.chmod(0o555)
        probe = folder / "probe"
        try:
            probe.write_bytes(b"")
        except PermissionError:
            pass
        else:
            probe.unlink()
            folder.chmod(0o755)
            pytest.skip("permissions are not enforced here (running as root)")
    else:
        _read_only_error(monkeypatch, folder)
    try:
        with pytest.raises(CheckpointError, match=r"could not write `.*model\.safetensors`"):
            nnblocks.save(nnblocks.build({"name": "io_test_lm", "dim": 8}), folder)
    finally:
        folder.chmod(0o755)
    assert {name: (folder / name).read_bytes() for name in os.listdir(folder)} == before
