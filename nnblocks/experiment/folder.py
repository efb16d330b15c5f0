"""One run per folder: a lock while a run writes, no silent overwrite, resumes that fit.

    claim_folder(folder, recipe, resume=False, overwrite=False)   # a context manager

- While a run writes its folder it holds ``.nnblocks.lock`` (``filelock``: released by the
  operating system if the process dies) and writes its pid and host beside it
  (``.nnblocks.owner.json``), so a second run into the folder fails at once naming them.
- A folder holding a finished run (``metrics.json``) is refused unless ``overwrite``
  (which clears the folder first) or ``resume`` (which continues it).
- ``resume`` needs ``checkpoints/last``; the recipe must describe the same run as the one
  recorded in ``recipe.yaml`` (same data, model, seed and plugins) and the checkpoint's
  model spec must equal the model built now. Other changed settings (more epochs, another
  learning rate) are recorded in ``recipe.resume-N.yaml`` beside the original recipe, which
  is never rewritten.

Every check runs before anything is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock, Timeout

from nnblocks.errors import CheckpointError, TrainingError
from nnblocks.train.checkpoint import read_training_document

__all__ = [
    "LOCK_FILE",
    "OWNER_FILE",
    "RunFolderError",
    "check_folder",
    "claim_folder",
    "recipe_changes",
]

LOCK_FILE = ".nnblocks.lock"
OWNER_FILE = ".nnblocks.owner.json"
# Sections a checkpoint cannot be carried across: it holds weights of this model, trained
# on this data from this seed.
_SAME_RUN = ("data", "model", "seed", "plugins")


class RunFolderError(TrainingError):
    """A run folder is in use, holds a finished run, or does not fit a ``--resume``."""


def _owner(folder: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((folder / OWNER_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def _alive(owner: Mapping[str, Any]) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # another machine: it may well be running
    try:
        os.kill(int(owner.get("pid", -1)), 0)
    except (OSError, ValueError):
        return False
    return True


def _busy(folder: Path, owner: Mapping[str, Any] | None) -> RunFolderError:
    who = (
        f"process {owner.get('pid')} on {owner.get('host')} (since {owner.get('started')})"
        if owner
        else "another process"
    )
    return RunFolderError(
        f"the run folder {folder} is being written by {who}; expected a folder no other run "
        "is using: wait for it, or choose another --out"
    )


def check_folder(folder: str | os.PathLike[str], *, resume: bool, overwrite: bool) -> None:
    """The checks that need no lock, run before any work starts; writes nothing.

    Raises:
        RunFolderError: the folder is in use by a live process, or holds a finished run
            (without ``overwrite`` or ``resume``), or ``resume`` and ``overwrite`` together.
        CheckpointError: ``resume`` without a checkpoint in the folder.
    """
    path = Path(folder)
    if resume and overwrite:
        raise RunFolderError("--resume continues a run and --overwrite replaces it; give one")
    if path.exists() and not path.is_dir():
        raise RunFolderError(
            f"the run folder {path} is a file; expected a folder (or no such path)"
        )
    owner = _owner(path)
    if owner is not None and _alive(owner):
        raise _busy(path, owner)
    if (path / "metrics.json").exists() and not (overwrite or resume):
        raise RunFolderError(
            f"the run folder {path} holds a finished run (metrics.json); expected a new folder. "
            "Give another --out, --overwrite to replace it, or --resume to continue it"
        )
    if resume and not (path / "checkpoints" / "last").is_dir():
        raise CheckpointError(
            f"--resume: there is no checkpoint to resume in {path / 'checkpoints' / 'last'}; "
            "expected the folder of an earlier run of this recipe (without --resume a new run "
            "starts)"
        )
    if resume:
        read_training_document(path / "checkpoints" / "last")  # whole and untampered


def recipe_changes(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, ``"train.lr: 0.01 -> 0.02"``."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        dotted = f"{prefix}{key}"
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += recipe_changes(a, b, dotted + ".")
        elif a != b:
            out.append(f"{dotted}: {a!r} -> {b!r}")
    return out


def _plain(recipe: Mapping[str, Any]) -> dict[str, Any]:
    # The same round trip recipe.yaml went through, so 1 and 1.0 or tuples compare alike.
    return dict(yaml.safe_load(yaml.safe_dump(json.loads(json.dumps(dict(recipe))))) or {})


def _check_resume(folder: Path, recipe: Mapping[str, Any], model_spec: Any) -> list[str]:
    recorded = folder / "recipe.yaml"
    if not recorded.is_file():
        raise CheckpointError(f"--resume: {recorded} is missing; it records the run to continue")
    old = dict(yaml.safe_load(recorded.read_text(encoding="utf-8")) or {})
    new = _plain(recipe)
    changes = recipe_changes(old, new)
    fixed = [c for c in changes if c.split(".")[0].split(":")[0] in _SAME_RUN]
    if fixed:
        raise RunFolderError(
            f"--resume: the recipe describes another run than the one in {folder}: "
            f"{'; '.join(fixed)}. A checkpoint continues only the same data, model and seed; "
            "start a new run with another --out"
        )
    spec_file = folder / "checkpoints" / "last" / "spec.json"
    if model_spec is not None and spec_file.is_file():
        saved = json.loads(spec_file.read_text(encoding="utf-8"))
        if saved != json.loads(json.dumps(model_spec, default=str)):
            raise RunFolderError(
                f"--resume: the checkpoint's model ({spec_file}) is not the model this recipe "
                "builds; expected the same spec. Start a new run with another --out"
            )
    return changes


def _clear(folder: Path) -> None:
    for child in folder.iterdir():
        if child.name in (LOCK_FILE, OWNER_FILE):
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _record_changes(folder: Path, recipe: Mapping[str, Any], changes: list[str]) -> Path:
    n = 1
    while (folder / f"recipe.resume-{n}.yaml").exists():
        n += 1
    path = folder / f"recipe.resume-{n}.yaml"
    header = "".join(f"# changed on resume: {c}\n" for c in changes)
    from nnblocks.io.atomic import atomic_write_text

    atomic_write_text(path, header + yaml.safe_dump(_plain(recipe), sort_keys=False))
    return path


@contextlib.contextmanager
def claim_folder(
    folder: str | os.PathLike[str],
    recipe: Mapping[str, Any],
    *,
    resume: bool = False,
    overwrite: bool = False,
    model_spec: Any = None,
) -> Iterator[Path]:
    """Hold ``folder`` for one run: locked, checked, cleared (``overwrite``) or resumable.

    Args:
        folder: the run folder (created if missing, after the checks).
        recipe: the recipe about to run (compared with the recorded one on ``resume``).
        resume: continue the run in the folder.
        overwrite: replace a run in the folder.
        model_spec: the spec of the model about to train (compared with the checkpoint's).

    Raises:
        RunFolderError: in use (naming pid and host), finished, or another run than
            ``recipe`` on resume.
        CheckpointError: ``resume`` without a checkpoint or recorded recipe.
    """
    path = Path(folder)
    check_folder(path, resume=resume, overwrite=overwrite)
    if resume:
        changes = _check_resume(path, recipe, model_spec)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(f"cannot create the run folder {path}: {exc.strerror}") from None
    lock = FileLock(str(path / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise _busy(path, _owner(path)) from None
    try:
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        (path / OWNER_FILE).write_text(json.dumps(owner) + "\n", encoding="utf-8")
        if overwrite:
            _clear(path)
        if resume and changes:
            _record_changes(path, recipe, changes)
        yield path
    finally:
        with contextlib.suppress(OSError):
            (path / OWNER_FILE).unlink()
        lock.release()
