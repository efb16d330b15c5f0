"""atomic_folder: a whole folder replaced at once; a failure leaves the old one untouched."""

from __future__ import annotations

import errno
import os

import pytest

from nnblocks.errors import CheckpointError
from nnblocks.io import atomic as atomic_module
from nnblocks.io import atomic_folder, recover_folder


def _contents(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_new_folder_appears_complete_and_replaces_the_old_one(tmp_path):
    target = tmp_path / "ck"
    with atomic_folder(target) as tmp:
        assert not target.exists() and tmp.parent == tmp_path
        (tmp / "a").write_bytes(b"1")
    with atomic_folder(target) as tmp:
        (tmp / "b").write_bytes(b"2")
    assert _contents(target) == {"b": b"2"}  # replaced as a whole: `a` is gone
    assert os.listdir(tmp_path) == ["ck"]  # no temporary or old folder left


def test_failure_in_the_body_leaves_the_old_folder(tmp_path):
    target = tmp_path / "ck"
    with atomic_folder(target) as tmp:
        (tmp / "a").write_bytes(b"1")
    with pytest.raises(RuntimeError, match="boom"), atomic_folder(target) as tmp:
        (tmp / "a").write_bytes(b"half")
        raise RuntimeError("boom")
    assert _contents(target) == {"a": b"1"} and os.listdir(tmp_path) == ["ck"]


def test_fallback_without_exchange_and_a_failing_rename(tmp_path, monkeypatch):
    target = tmp_path / "ck"
    with atomic_folder(target) as tmp:
        (tmp / "a").write_bytes(b"1")
    monkeypatch.setattr(atomic_module, "_EXCHANGE", None)  # a file system that cannot swap
    with atomic_folder(target) as tmp:
        (tmp / "a").write_bytes(b"2")
    assert _contents(target) == {"a": b"2"} and os.listdir(tmp_path) == ["ck"]
    real_rename = os.rename

    def full_disk(src, dst):
        if str(dst) == str(target):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", full_disk)
    with pytest.raises(CheckpointError, match="No space left"), atomic_folder(target) as tmp:
        (tmp / "a").write_bytes(b"3")
    monkeypatch.undo()
    recover_folder(target)  # the old folder was moved aside: put back, as on the next save
    assert _contents(target) == {"a": b"2"} and os.listdir(tmp_path) == ["ck"]


def test_a_file_in_the_way_is_refused(tmp_path):
    (tmp_path / "ck").write_text("x")
    with pytest.raises(CheckpointError, match="is a file"), atomic_folder(tmp_path / "ck"):
        pass
