"""Manifests: SHA-256 and size per file; every mismatch names the file."""

from __future__ import annotations

import json
import os

import pytest

from nnblocks.errors import CheckpointError
from nnblocks.io import MANIFEST_NAME, verify_manifest, write_manifest


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "weights.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_text("hello")
    write_manifest(tmp_path, ["weights.bin", "sub/notes.txt"])
    return tmp_path


def test_written_manifest_verifies(folder):
    files = verify_manifest(folder, require=["weights.bin"])
    assert files["weights.bin"]["size"] == 1024
    assert files["sub/notes.txt"]["size"] == 5


def test_missing_manifest_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match=r"manifest\.json` is missing"):
        verify_manifest(tmp_path)


def test_missing_listed_file_is_named(folder):
    (folder / "sub" / "notes.txt").unlink()
    with pytest.raises(CheckpointError, match=r"notes\.txt` is listed in the manifest but missing"):
        verify_manifest(folder)


def test_size_mismatch_is_named(folder):
    with open(folder / "weights.bin", "ab") as f:
        f.write(b"!")
    with pytest.raises(
        CheckpointError, match=r"weights\.bin` is 1025 bytes, but the manifest expects 1024"
    ):
        verify_manifest(folder)


def test_flipped_byte_is_caught_by_the_hash(folder):
    raw = bytearray((folder / "weights.bin").read_bytes())
    raw[500] ^= 0x10
    (folder / "weights.bin").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"weights\.bin` is corrupt: its SHA-256"):
        verify_manifest(folder)


def test_required_file_must_be_listed(folder):
    with pytest.raises(CheckpointError, match="does not list `model.safetensors`"):
        verify_manifest(folder, require=["model.safetensors"])


@pytest.mark.parametrize(
    "name", ["../escape.txt", "/etc/passwd", "a/../b", "a\\b", "", MANIFEST_NAME]
)
def test_names_outside_the_folder_are_refused(folder, name):
    with pytest.raises(CheckpointError, match="relative to the folder"):
        write_manifest(folder, [name])
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["files"][name] = {"sha256": "0" * 64, "size": 0}
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="relative to the folder"):
        verify_manifest(folder)


def test_symlink_out_of_the_folder_is_refused(folder, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "secret"
    outside.write_text("not yours")
    try:
        os.symlink(outside, folder / "link")
    except (OSError, NotImplementedError):
        pytest.skip("symlinks are not available here")
    write_manifest(folder, ["weights.bin", "link"])
    with pytest.raises(CheckpointError, match="points outside the checkpoint folder"):
        verify_manifest(folder)


@pytest.mark.parametrize(
    "text, match",
    [
        ("not json", "not valid JSON"),
        ('{"format": "other"}', "expected an nnblocks manifest"),
        ('{"format": "nnblocks.manifest", "version": 99, "files": {}}', "version 99"),
        (
            '{"format": "nnblocks.manifest", "version": 1, "files": {"a": {"sha256": "xyz", "size": 1}}}',
            "64 hex digits",
        ),
    ],
)
def test_malformed_manifest_is_refused(tmp_path, text, match):
    (tmp_path / MANIFEST_NAME).write_text(text)
    with pytest.raises(CheckpointError, match=match):
        verify_manifest(tmp_path)
