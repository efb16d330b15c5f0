"""write_tensors / read_tensors round trips: dtypes, shared tensors, metadata."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from nnblocks.errors import CheckpointError
from nnblocks.io import check_file, read_metadata, read_tensors, write_tensors


def test_valid_handmade_file_is_accepted(tmp_path):
    # Written by hand from the format description, not by the library: the checks accept
    # any conforming file, padding spaces after the JSON included.
    header = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    header += b" " * (-len(header) % 8)
    path = tmp_path / "ok.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + struct.pack("<2f", 1, 2))
    assert torch.equal(read_tensors(path)["a"], torch.tensor([1.0, 2.0]))


def test_round_trip_keeps_values_dtypes_and_shapes(tmp_path):
    tensors = {
        "f32": torch.randn(3, 4),
        "f16": torch.randn(5).half(),
        "bf16": torch.randn(2, 2).bfloat16(),
        "i64": torch.arange(6).reshape(2, 3),
        "bool": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 7),
        "scalar": torch.tensor(2.5),
        "transposed": torch.randn(4, 3).t(),  # non-contiguous
    }
    path = tmp_path / "t.safetensors"
    write_tensors(path, tensors)
    back = read_tensors(path)
    assert set(back) == set(tensors)
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype, name
        assert back[name].shape == t.shape, name
        assert torch.equal(back[name], t), name


def test_tied_tensors_are_stored_once_and_restored(tmp_path):
    w = torch.randn(6, 4)
    path = tmp_path / "t.safetensors"
    write_tensors(path, {"embed.weight": w, "head.weight": w, "other": torch.ones(2)})
    assert set(check_file(path).entries) == {"embed.weight", "other"}
    back = read_tensors(path)
    assert back["head.weight"] is back["embed.weight"]
    assert torch.equal(back["head.weight"], w)


def test_overlapping_views_are_stored_as_copies(tmp_path):
    base = torch.randn(4, 3)
    tensors = {"all": base, "rows": base[1:3], "col": base[:, 0]}
    path = tmp_path / "t.safetensors"
    write_tensors(path, tensors)
    back = read_tensors(path)
    for name, t in tensors.items():
        assert torch.equal(back[name], t), name


def test_metadata_round_trips_without_the_reserved_key(tmp_path):
    w = torch.randn(2)
    path = tmp_path / "t.safetensors"
    write_tensors(path, {"a": w, "b": w}, metadata={"step": "12"})
    assert read_metadata(path) == {"step": "12"}


def test_reserved_or_non_string_metadata_is_refused(tmp_path):
    path = tmp_path / "t.safetensors"
    with pytest.raises(CheckpointError, match="reserved"):
        write_tensors(path, {"a": torch.ones(1)}, metadata={"nnblocks.aliases": "{}"})
    with pytest.raises(CheckpointError, match="strings to strings"):
        write_tensors(path, {"a": torch.ones(1)}, metadata={"step": 3})  # type: ignore[dict-item]
    assert not path.exists()


def test_non_tensor_value_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "t.safetensors"
    with pytest.raises(CheckpointError, match=r"`a` must be a tensor") as info:
        write_tensors(path, {"a": [1, 2]})  # type: ignore[dict-item]
    assert str(path) in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_rewrite_replaces_the_file(tmp_path):
    path = tmp_path / "t.safetensors"
    write_tensors(path, {"a": torch.zeros(3)})
    write_tensors(path, {"b": torch.ones(2)})
    assert set(read_tensors(path)) == {"b"}
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]
