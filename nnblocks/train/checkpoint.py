"""Training checkpoints: everything needed to continue a run exactly, saved atomically.

A checkpoint is a folder::

    model.safetensors   the model's state dict (tied tensors stored once)
    state.safetensors   optimizer state, gradients still being accumulated, the loss log
    training.json       position (epoch, batch, step), sampler seed, optimizer groups,
                        schedule, gradient scaler and callback states, RNG states of every
                        process (torch, CUDA, numpy, random), history
    spec.json           the model's spec, when it was built by nnblocks.build, so
                        ``nnblocks.load(folder)`` rebuilds the model for inference
    manifest.json       SHA-256 and size of every file above

Atomicity: the folder is written under a temporary name next to its final place (each file
fsynced, the manifest last), then swapped in with one ``renameat2(RENAME_EXCHANGE)``, so a
reader, or a process killed at any instant, finds either the complete old folder or the
complete new one, and never a partial file under a final name. Where the kernel lacks that
call, two renames are used and ``_recover`` puts the old folder back if a crash fell
between them.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import ctypes.util
import json
import logging
import math
import os
import random
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from nnblocks.errors import CheckpointError, TrainingError
from nnblocks.train.distributed import gather_objects

if TYPE_CHECKING:
    from nnblocks.train.learner import Learner

__all__ = [
    "MODEL_FILE",
    "STATE_FILE",
    "TRAINING_FILE",
    "save_training_state",
    "load_training_state",
    "load_model_weights",
    "read_training_document",
    "write_checkpoint_folder",
    "rng_state",
    "set_rng_state",
]

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
STATE_FILE = "state.safetensors"
TRAINING_FILE = "training.json"
_FORMAT = "nnblocks.training_state"
_VERSION = 1
_MAX_JSON_BYTES = 256 * 2**20
_TMP = ".tmp-"
_OLD = ".old-"

# -- JSON with non-finite floats -------------------------------------------------------

_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _plain(value: Any) -> Any:
    """JSON-safe copy: tuples as lists, non-finite floats as {"float": "NaN"}."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return _plain(value.item())
    if isinstance(value, (np.integer, np.floating)):
        return _plain(value.item())
    return value


def _unplain(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"float"} and value["float"] in _NONFINITE:
            return _NONFINITE[value["float"]]
        return {k: _unplain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unplain(v) for v in value]
    return value


# -- RNG states --------------------------------------------------------------------------


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def rng_state() -> dict[str, Any]:
    """This process's RNG states (torch CPU and CUDA, numpy, random) as plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": _b64(torch.get_rng_state()),
        "numpy": [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned."""
    torch.set_rng_state(_unb64(state["torch"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])


# -- the atomic folder swap --------------------------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_EXCHANGE = _renameat2() if os.name == "posix" else None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths; False where the kernel cannot."""
    if _EXCHANGE is None:
        return False
    rc = _EXCHANGE(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: file system cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


def _siblings(path: Path, marker: str) -> list[Path]:
    prefix = f".{path.name}{marker}"
    try:
        return sorted(p for p in path.parent.iterdir() if p.name.startswith(prefix))
    except OSError:
        return []


def _recover(path: Path) -> None:
    """Undo a crash between the two renames of the fallback swap; drop stale temporaries."""
    olds = _siblings(path, _OLD)
    if not path.exists() and olds:
        with contextlib.suppress(OSError):
            os.rename(olds[-1], path)
            olds = olds[:-1]
    for stale in olds + _siblings(path, _TMP):
        shutil.rmtree(stale, ignore_errors=True)


def _fsync_dir(folder: Path) -> None:
    from nnblocks.io.atomic import fsync_dir

    fsync_dir(folder)


def write_checkpoint_folder(
    path: str | os.PathLike[str],
    tensors: dict[str, dict[str, torch.Tensor]],
    files: dict[str, bytes],
) -> Path:
    """Write a folder of safetensors and other files, with a manifest, atomically.

    Args:
        path: the final folder (replaced as a whole if it exists).
        tensors: ``{file name: {tensor name: tensor}}``, each written as safetensors.
        files: ``{file name: bytes}``.

    Returns:
        ``path``.

    Raises:
        CheckpointError: the folder cannot be written (naming it); the old folder, if any,
            is left byte-identical and no temporary folder is left behind.
    """
    from nnblocks.io.atomic import atomic_write_bytes
    from nnblocks.io.manifest import write_manifest
    from nnblocks.io.safetensors_io import write_tensors

    path = Path(path)
    parent = path.parent
    if path.exists() and not path.is_dir():
        raise CheckpointError(
            f"cannot save a checkpoint to `{path}`: it is a file; expected a folder."
        )
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(
            f"could not create the folder `{parent}` for checkpoint `{path.name}`: {exc.strerror or exc}."
        ) from exc
    _recover(path)
    tmp = parent / f".{path.name}{_TMP}{secrets.token_hex(6)}"
    try:
        os.mkdir(tmp)
    except OSError as exc:
        raise CheckpointError(
            f"could not write checkpoint `{path}`: {exc.strerror or exc}. Expected a writable "
            f"folder `{parent}`; the previous checkpoint, if any, is unchanged."
        ) from exc
    try:
        for name, group in tensors.items():
            write_tensors(tmp / name, group)
        for name, data in files.items():
            atomic_write_bytes(tmp / name, data)
        write_manifest(tmp, [*tensors, *files])
        _fsync_dir(tmp)
        if path.exists():
            if _exchange(tmp, path):
                _fsync_dir(parent)
                shutil.rmtree(tmp, ignore_errors=True)  # now holds the old checkpoint
                return path
            old = parent / f".{path.name}{_OLD}{secrets.token_hex(6)}"
            os.rename(path, old)
            os.rename(tmp, path)
            _fsync_dir(parent)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
            _fsync_dir(parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(
            f"could not write checkpoint `{path}`: {exc.strerror or exc}; the previous "
            "checkpoint, if any, is unchanged."
        ) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


# -- saving ------------------------------------------------------------------------------


def _check_finite(learn: Learner, path: Path) -> None:
    from nnblocks.train.callbacks.nan_guard import NanGuard

    for guard in learn.cbs.find(NanGuard):
        guard.check(learn)  # names the batch where the loss first went non-finite
    for name, p in learn.model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise TrainingError(
                f"not saving checkpoint `{path}`: parameter `{name}` holds NaN or Inf "
                f"(epoch {learn.epoch}, batch {learn.iter}). The last good checkpoint is kept."
            )


def _optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{idx}.{key}"] = value.detach().clone()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"scalars": scalars, "param_groups": groups, "class": type(opt).__name__}


def _position(learn: Learner) -> tuple[int, int]:
    return getattr(learn, "_next_pos", (learn.epoch, 0))


def save_training_state(learn: Learner, path: str | os.PathLike[str]) -> Path | None:
    """Save ``learn``'s full training state to the folder ``path`` (see the module docs).

    Every process must call it (the RNG states of all are gathered); rank 0 writes.

    Returns:
        The folder on rank 0, ``None`` elsewhere.

    Raises:
        TrainingError: the loss or a parameter is non-finite (nothing is written).
        CheckpointError: the folder cannot be written (the previous checkpoint is kept).
    """
    path = Path(path)
    _check_finite(learn, path)
    rngs = gather_objects(rng_state())
    if learn.dist.rank != 0:
        return None
    model_tensors = {k: v.detach().clone() for k, v in learn.model.state_dict().items()}
    state_tensors, opt_doc = _optimizer_state(learn.opt)
    for name, p in learn.model.named_parameters():
        if p.grad is not None:
            state_tensors[f"grad.{name}"] = p.grad.detach().clone()
    if learn.loss_log:
        state_tensors["loss.log"] = torch.cat(learn.loss_log)
    if learn._losses:
        state_tensors["loss.epoch"] = torch.stack([x.float() for x in learn._losses]).cpu()
    epoch, next_iter = _position(learn)
    schedules = [cb.state_dict() for cb in learn.cbs.callbacks if hasattr(cb, "schedules")]
    doc = {
        "format": _FORMAT,
        "version": _VERSION,
        "epoch": epoch,
        "iter": next_iter,
        "train_step": learn.train_step,
        "n_epochs": learn.n_epochs,
        "n_iter": len(learn.loaders["train"]),
        "seed": learn._fit_seed,
        "world_size": learn.dist.world_size,
        "batch_size": learn.batch_size,
        "optimizer": opt_doc,
        "schedule": schedules,
        "scaler": learn.scaler.state_dict() if learn.scaler is not None else None,
        "callbacks": learn.cbs.state_dict(),
        "history": learn.history,
        "rng": rngs,
    }
    files = {TRAINING_FILE: (json.dumps(_plain(doc), indent=1, allow_nan=False) + "\n").encode()}
    spec = _spec_bytes(learn.model, path)
    if spec is not None:
        from nnblocks.io.spec_file import SPEC_NAME

        files[SPEC_NAME] = spec
    return write_checkpoint_folder(
        path, {MODEL_FILE: model_tensors, STATE_FILE: state_tensors}, files
    )


def _spec_bytes(model: nn.Module, path: Path) -> bytes | None:
    try:
        from nnblocks.io.spec_file import dump_spec_document, spec_document
    except ImportError:
        return None
    try:
        return dump_spec_document(spec_document(model, folder=path))
    except CheckpointError:
        return None  # not built from a spec: the checkpoint still resumes, load() cannot rebuild


# -- loading -----------------------------------------------------------------------------


def _verified(path: str | os.PathLike[str], require: tuple[str, ...]) -> Path:
    from nnblocks.io.manifest import verify_manifest

    path = Path(path)
    _recover(path) if path.parent.is_dir() else None
    if not path.is_dir():
        raise CheckpointError(
            f"`{path}` is missing: expected a training checkpoint folder written by "
            "Learner.save_checkpoint or the SaveCheckpoint callback."
        )
    verify_manifest(path, require=require)
    return path


def read_training_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The verified ``training.json`` of a checkpoint.

    Raises:
        CheckpointError: missing, corrupt (SHA-256), or not a training checkpoint.
    """
    from nnblocks.io._json import parse_json, read_small_file

    folder = _verified(path, (TRAINING_FILE,))
    where = f"`{folder / TRAINING_FILE}`"
    doc = parse_json(
        read_small_file(folder / TRAINING_FILE, _MAX_JSON_BYTES, what="the training state"),
        where=where,
    )
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise CheckpointError(f"{where}: expected a training state (format `{_FORMAT}`).")
    if doc.get("version") != _VERSION:
        raise CheckpointError(
            f"{where}: version {doc.get('version')!r:.40} is not supported; expected {_VERSION}."
        )
    return _unplain(doc)


def _load_weights(model: nn.Module, folder: Path, device: torch.device | str) -> None:
    from nnblocks.io.safetensors_io import read_tensors

    tensors = read_tensors(folder / MODEL_FILE, device=str(device))
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"`{folder / MODEL_FILE}` does not fit the model {type(model).__name__}: {exc}"
        ) from exc


def load_model_weights(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load a checkpoint's weights into ``model`` for inference (verified; RNGs untouched).

    Returns:
        ``model``.

    Raises:
        CheckpointError: a missing or corrupt checkpoint (naming the file), or weights that
            do not fit the model.
    """
    folder = _verified(path, (MODEL_FILE,))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    _load_weights(model, folder, device)
    return model


def _load_optimizer(
    opt: torch.optim.Optimizer, doc: dict[str, Any], tensors: dict[str, torch.Tensor], where: Path
) -> None:
    current = opt.state_dict()
    saved_groups = doc["param_groups"]
    if len(saved_groups) != len(current["param_groups"]) or any(
        len(a["params"]) != len(b["params"]) for a, b in zip(saved_groups, current["param_groups"])
    ):
        raise CheckpointError(
            f"`{where}`: the optimizer has {len(current['param_groups'])} parameter groups of sizes "
            f"{[len(g['params']) for g in current['param_groups']]}, but the checkpoint holds "
            f"{[len(g['params']) for g in saved_groups]}; build the Learner with the same "
            "param_groups to resume."
        )
    groups = []
    for now, saved in zip(current["param_groups"], saved_groups):
        group = dict(now)
        for key, value in saved.items():
            if key == "params":
                continue
            group[key] = tuple(value) if isinstance(now.get(key), tuple) else value
        groups.append(group)
    state: dict[int, dict[str, Any]] = {}
    for name, t in tensors.items():
        if name.startswith("opt."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = t
    for idx, scalars in doc["scalars"].items():
        state.setdefault(int(idx), {}).update(scalars)
    try:
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"`{where}`: the optimizer state does not fit: {exc}") from exc


def load_training_state(learn: Learner, path: str | os.PathLike[str]) -> None:
    """Load a checkpoint into ``learn`` so the next steps continue the saved run exactly.

    Weights, optimizer state, pending gradients, position and loss log are restored now;
    callback states and RNG states are restored when the fit starts (after ``before_fit``).

    Raises:
        CheckpointError: a missing or corrupt checkpoint (naming the file) or one that does
            not fit the model or optimizer.
    """
    from nnblocks.io.safetensors_io import read_tensors

    folder = _verified(path, (MODEL_FILE, STATE_FILE, TRAINING_FILE))
    doc = read_training_document(folder)
    _load_weights(learn.model, folder, learn.device)
    tensors = read_tensors(folder / STATE_FILE, device=str(learn.device))
    _load_optimizer(learn.opt, doc["optimizer"], tensors, folder / STATE_FILE)
    for name, p in learn.model.named_parameters():
        grad = tensors.get(f"grad.{name}")
        p.grad = grad.to(p.dtype).clone() if grad is not None else None
    if doc["world_size"] != learn.dist.world_size:
        log.warning(
            "resuming a run saved with %d processes on %d: the sample order is kept, the RNG "
            "streams of processes beyond the saved ones are not",
            doc["world_size"],
            learn.dist.world_size,
        )
    if doc["n_iter"] != learn.n_iter or doc["n_epochs"] != learn.n_epochs:
        log.warning(
            "resuming %s saved for %d epochs of %d batches into a fit of %d epochs of %d batches: "
            "the schedule will differ from the original run",
            folder,
            doc["n_epochs"],
            doc["n_iter"],
            learn.n_epochs,
            learn.n_iter,
        )
    learn.start_epoch = learn.epoch = int(doc["epoch"])
    learn.start_iter = int(doc["iter"])
    learn.train_step = int(doc["train_step"])
    learn._fit_seed = int(doc["seed"])
    learn.loaders["train"].seed = learn._fit_seed
    learn.history = list(doc["history"])
    learn.loss_log = [tensors["loss.log"].cpu()] if "loss.log" in tensors else []
    epoch_losses = tensors.get("loss.epoch")
    learn._losses = (
        list(epoch_losses.unbind()) if epoch_losses is not None and learn.start_iter > 0 else []
    )
    rngs = doc["rng"]
    learn._pending_resume = {
        "callbacks": doc["callbacks"],
        "rng": rngs[learn.dist.rank] if learn.dist.rank < len(rngs) else rngs[0],
        "scaler": doc["scaler"],
    }
    log.info(
        "resuming from %s at epoch %d, batch %d (step %d)",
        folder,
        learn.start_epoch,
        learn.start_iter,
        learn.train_step,
    )


def apply_pending_resume(learn: Learner) -> None:
    """The second half of ``load_training_state``, run by the loop after ``before_fit``."""
    pending = getattr(learn, "_pending_resume", None)
    if not pending:
        return
    learn._pending_resume = None
    learn.cbs.load_state_dict(pending["callbacks"])
    if pending["scaler"] is not None and learn.scaler is not None:
        learn.scaler.load_state_dict(pending["scaler"])
    set_rng_state(pending["rng"])
