"""Atomic writes: the old file survives any failure byte for byte, and no temp file is left."""

from __future__ import annotations

import errno
import os

import pytest

from nnblocks.errors import CheckpointError
from nnblocks.io import atomic_files, atomic_path, atomic_write_bytes, atomic_write_text


def test_write_creates_and_replaces(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_new_file_follows_umask_not_temp_file_mode(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failing_replace_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old contents")

    def broken_replace(src, dst):
        raise OSError(errno.EIO, "simulated I/O error")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(CheckpointError, match=r"could not write `.*f\.bin`: simulated I/O error"):
        atomic_write_bytes(path, b"new contents that never land")
    assert path.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_exception_during_write_keeps_old_file_and_removes_temp(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old contents")
    with pytest.raises(RuntimeError, match="crash mid-write"), atomic_path(path) as temp:
        temp.write_bytes(b"half of the new")
        raise RuntimeError("crash mid-write")
    assert path.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_group_replaces_in_order_and_all_or_nothing_before_commit(tmp_path):
    (tmp_path / "a").write_bytes(b"old a")
    with pytest.raises(KeyError), atomic_files(tmp_path) as staging:
        staging.path("a").write_bytes(b"new a")
        staging.path("b").write_bytes(b"new b")
        raise KeyError("fails before commit")
    assert sorted(os.listdir(tmp_path)) == ["a"]
    assert (tmp_path / "a").read_bytes() == b"old a"

    order = []
    real_replace = os.replace

    def recording_replace(src, dst):
        order.append(os.path.basename(dst))
        real_replace(src, dst)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "replace", recording_replace)
        with atomic_files(tmp_path) as staging:
            staging.path("b").write_bytes(b"new b")
            staging.path("a").write_bytes(b"new a")
    assert order == ["b", "a"]
    assert (tmp_path / "a").read_bytes() == b"new a"


def test_missing_folder_raises_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="nope"):
        atomic_write_bytes(tmp_path / "nope" / "f.bin", b"x")
