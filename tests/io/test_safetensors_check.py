"""Hostile and malformed safetensors files are refused before any library parses them."""

from __future__ import annotations

import json
import struct
import tracemalloc
from pathlib import Path

import pytest
import torch

from nnblocks.errors import CheckpointError, NNBlocksError
from nnblocks.io import MAX_HEADER_BYTES, check_file, read_tensors, write_tensors


@pytest.fixture(autouse=True)
def library_unreached(monkeypatch):
    """Every refusal here must come from our checks, before the safetensors library runs."""

    def unreachable(*args, **kwargs):
        raise AssertionError("a hostile file reached the safetensors library")

    monkeypatch.setattr("nnblocks.io.safetensors_io.load_file", unreachable)


def craft(
    path: Path, header: dict | bytes, data: bytes = b"", *, length: int | None = None
) -> Path:
    """Write ``[u64 length][header][data]`` by hand, lying about the length if asked."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


def refused(path: Path, match: str) -> CheckpointError:
    with pytest.raises(CheckpointError, match=match) as info:
        read_tensors(path)
    assert isinstance(info.value, NNBlocksError)
    assert str(path) in str(info.value)  # every refusal names the file
    return info.value


def f32(shape: list, begin: int, end: int) -> dict:
    return {"dtype": "F32", "shape": shape, "data_offsets": [begin, end]}


def test_pickle_renamed_safetensors_is_refused_and_runs_no_code(tmp_path, hostile_pickle):
    payload, marker = hostile_pickle
    path = tmp_path / "model.safetensors"
    path.write_bytes(payload)
    err = refused(path, "header length field claims")
    assert "pickle" in str(err)
    assert not marker.exists()


def test_torch_save_zip_renamed_safetensors_is_refused(tmp_path, hostile_pickle):
    payload, marker = hostile_pickle
    path = tmp_path / "model.safetensors"
    torch.save({"w": torch.ones(2)}, path)
    err = refused(path, "header length field claims")
    assert "zip" in str(err)
    assert not marker.exists()


def test_header_longer_than_file_is_refused_without_allocating(tmp_path):
    claimed = 50 * 1024 * 1024  # under the 100 MB limit, far over the file size
    path = craft(tmp_path / "x.safetensors", b'{"a": 1}', length=claimed)
    tracemalloc.start()
    try:
        refused(path, f"claims {claimed} bytes, but only 8 bytes follow")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024  # never trusted the length field with an allocation


def test_header_over_limit_is_refused(tmp_path):
    path = craft(tmp_path / "x.safetensors", b"{}", length=MAX_HEADER_BYTES + 1)
    refused(path, "over the limit")


def test_offsets_out_of_range_are_refused(tmp_path):
    path = craft(tmp_path / "x.safetensors", {"a": f32([100], 0, 400)}, bytes(16))
    refused(path, r"data_offsets \[0, 400\] reach past the data area of 16 bytes")


def test_negative_offsets_are_refused(tmp_path):
    path = craft(tmp_path / "x.safetensors", {"a": f32([1], -4, 0)}, bytes(4))
    refused(path, "negative data_offsets")


def test_shape_overflowing_int64_is_refused(tmp_path):
    path = craft(tmp_path / "x.safetensors", {"a": f32([2**62, 4], 0, 4)}, bytes(4))
    refused(path, "overflows int64")


def test_huge_rank_shape_is_refused_quickly(tmp_path):
    path = craft(tmp_path / "x.safetensors", {"a": f32([2] * 100_000, 0, 4)}, bytes(4))
    refused(path, "overflows int64")


def test_duplicate_tensor_names_are_refused(tmp_path):
    one = json.dumps(f32([1], 0, 4))
    header = f'{{"a": {one}, "a": {one}}}'.encode()
    refused(craft(tmp_path / "x.safetensors", header, bytes(4)), "names `a` twice")


def test_truncated_data_is_refused(tmp_path):
    path = tmp_path / "x.safetensors"
    write_tensors(path, {"a": torch.randn(4, 4), "b": torch.randn(3)})
    path.write_bytes(path.read_bytes()[:-5])
    refused(path, "truncated")


def test_flipped_header_byte_is_refused(tmp_path):
    path = tmp_path / "x.safetensors"
    write_tensors(path, {"a": torch.randn(4)})
    raw = bytearray(path.read_bytes())
    at = raw.index(b'"F32"') + 1
    raw[at] ^= 0x01  # F32 -> G32
    path.write_bytes(bytes(raw))
    refused(path, "unknown dtype 'G32'")


# Every other way a header can lie, each its own case.
MALFORMED = {
    "empty_file": (b"", None, b"", "expected at least 8 bytes"),
    "tiny_header": (b"{", 1, b"", "cannot hold a JSON object"),
    "not_json": (b"{not json}", None, b"", "not valid JSON"),
    "not_utf8": (b'{"\xff": 1}', None, b"", "not valid UTF-8"),
    "not_an_object": (b"[1, 2]", None, b"", r"must start with '\{'"),
    "nan_constant": (b'{"a": NaN}', None, b"", "not valid JSON"),
    "unknown_dtype": (
        {"a": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}},
        None,
        bytes(16),
        "unknown dtype",
    ),
    "bool_in_shape": (
        {"a": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}},
        None,
        bytes(4),
        "non-negative int64",
    ),
    "negative_dim": ({"a": f32([-1], 0, 0)}, None, b"", "non-negative int64"),
    "dim_over_int64": ({"a": f32([2**64], 0, 4)}, None, bytes(4), "non-negative int64"),
    "size_mismatch": ({"a": f32([3], 0, 8)}, None, bytes(8), "needs 12 bytes"),
    "end_before_begin": ({"a": f32([0], 4, 0)}, None, bytes(4), "end before they begin"),
    "overlap": ({"a": f32([2], 0, 8), "b": f32([2], 4, 12)}, None, bytes(12), "overlap"),
    "gap": ({"a": f32([1], 0, 4), "b": f32([1], 8, 12)}, None, bytes(12), "belong to no tensor"),
    "trailing_bytes": ({"a": f32([1], 0, 4)}, None, bytes(12), "trailing bytes"),
    "extra_key": ({"a": {**f32([1], 0, 4), "x": 1}}, None, bytes(4), "exactly the keys"),
    "entry_not_object": ({"a": 3}, None, b"", "expected an object"),
    "offsets_not_pair": (
        {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}},
        None,
        bytes(4),
        r"data_offsets \[begin, end\]",
    ),
    "metadata_not_str": ({"__metadata__": {"k": 1}}, None, b"", "strings to strings"),
    "metadata_not_dict": ({"__metadata__": ["k"]}, None, b"", "must be an object"),
    "deep_nesting": (
        b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        None,
        b"",
        "nested too deeply|not valid JSON",
    ),
    "bad_alias": (
        {"__metadata__": {"nnblocks.aliases": '{"b": "missing"}'}},
        None,
        b"",
        "alias `b`",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_header_is_refused(tmp_path, case):
    header, length, data, match = MALFORMED[case]
    path = craft(tmp_path / f"{case}.safetensors", header, data, length=length)
    if case == "empty_file":
        path.write_bytes(b"")
    refused(path, match)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="missing"):
        check_file(tmp_path / "nope.safetensors")
