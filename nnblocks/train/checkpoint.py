"""Training checkpoints: everything needed to continue a run exactly, saved atomically.

A checkpoint is a folder::

    model.safetensors   the model's state dict (tied tensors stored once)
    state.safetensors   optimizer state, gradients still being accumulated, the loss log
    training.json       position (epoch, batch, step), sampler seed, optimizer groups,
                        schedule, gradient scaler and callback states, RNG states of every
                        process (torch, CUDA, numpy, random), history
    config.json         the model's spec, when it was built by nnblocks.build
    manifest.json       SHA-256 and size of every file above

The model's files are those of ``nnblocks.save`` (``nnblocks.io.model_files``), so a run
folder holds one format and ``nnblocks.load(checkpoint)`` rebuilds the model for inference;
its weights load through the same checked loader (``nnblocks.io.load_weights``). The
folder is replaced as a whole and atomically (``nnblocks.io.atomic_folder``): a process
killed at any instant leaves the complete previous checkpoint or the complete new one.
Nothing is written once the loss or the weights are non-finite. ``training.json`` is
validated field by field when read (``CheckpointError`` naming the field).

A sharded run (``strategy="fsdp"``) writes ``sharded/`` instead of ``model.safetensors``
and the optimizer and gradient tensors: a ``torch.distributed.checkpoint`` folder to which
every process writes its shards (``nnblocks.train.fsdp``), read back resharded on any
number of processes. The rest of the folder is as above, written by rank 0, and the
manifest lists the shard files too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from nnblocks.errors import CheckpointError, TrainingError
from nnblocks.io._json import parse_json, read_small_file
from nnblocks.io.atomic import atomic_folder, recover_folder
from nnblocks.io.manifest import verify_manifest, write_manifest
from nnblocks.io.model_io import WEIGHTS_NAME, model_files
from nnblocks.io.safetensors_io import read_tensors, serialize_tensors
from nnblocks.io.weights import load_weights
from nnblocks.train.checkpoint_schema import validate_training_document
from nnblocks.train.distributed import barrier, broadcast_object, gather_objects
from nnblocks.train.fsdp import (
    SHARDED_DIR,
    is_sharded,
    load_sharded,
    local_tensor,
    save_sharded,
)
from nnblocks.train.rng import rng_state, set_rng_state

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
    "apply_pending_resume",
    "rng_state",
    "set_rng_state",
]

log = logging.getLogger(__name__)

MODEL_FILE = WEIGHTS_NAME  # one weights-file name for saved models and checkpoints
STATE_FILE = "state.safetensors"
TRAINING_FILE = "training.json"
_FORMAT = "nnblocks.training_state"
_VERSION = 1
_MAX_JSON_BYTES = 256 * 2**20

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


# -- saving ------------------------------------------------------------------------------


def _check_finite(learn: Learner, path: Path) -> None:
    from nnblocks.train.callbacks.nan_guard import NanGuard

    for guard in learn.cbs.find(NanGuard):
        guard.check(learn)  # names the batch where the loss first went non-finite
    # Each process checks what it holds (its shards under FSDP); all learn of any failure.
    bad = [
        n for n, p in learn.model.named_parameters() if not torch.isfinite(local_tensor(p)).all()
    ]
    if is_sharded(learn.model):
        bad = sorted({n for names in gather_objects(bad) for n in names})
    if bad:
        raise TrainingError(
            f"not saving checkpoint `{path}`: parameter `{bad[0]}` holds NaN or Inf "
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
    return getattr(learn, "next_position", (learn.epoch, 0))


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
    if is_sharded(learn.model):
        return _save_sharded_state(learn, path, rngs)
    if learn.dist.rank != 0:
        return None
    model_tensors = {k: v.detach().clone() for k, v in learn.model.state_dict().items()}
    state_tensors, opt_doc = _optimizer_state(learn.opt)
    for name, p in learn.model.named_parameters():
        if p.grad is not None:
            state_tensors[f"grad.{name}"] = p.grad.detach().clone()
    state_tensors.update(_loss_tensors(learn))
    files = _document_files(learn, path, opt_doc, rngs)
    with atomic_folder(path) as tmp:
        serialize_tensors(tmp / MODEL_FILE, model_tensors, {"format": "pt"}, name=path / MODEL_FILE)
        serialize_tensors(tmp / STATE_FILE, state_tensors, name=path / STATE_FILE)
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        write_manifest(tmp, [MODEL_FILE, STATE_FILE, *files])
    return path


def _save_sharded_state(learn: Learner, path: Path, rngs: list[Any]) -> Path | None:
    """Every process writes its shards into rank 0's temporary folder; rank 0 the rest."""
    main = learn.dist.rank == 0
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_folder(path)) if main else None
        tmp = Path(broadcast_object(str(tmp) if tmp is not None else None))
        save_sharded(tmp / SHARDED_DIR, learn.model, learn.opt)
        if main:
            shards = sorted(f"{SHARDED_DIR}/{p.name}" for p in (tmp / SHARDED_DIR).iterdir())
            groups = [{k: v for k, v in g.items() if k != "params"} for g in learn.opt.param_groups]
            for group, saved in zip(groups, learn.opt.state_dict()["param_groups"]):
                group["params"] = saved["params"]
            opt_doc = {"scalars": {}, "param_groups": groups, "class": type(learn.opt).__name__}
            files = _document_files(learn, path, opt_doc, rngs)
            serialize_tensors(tmp / STATE_FILE, _loss_tensors(learn), name=path / STATE_FILE)
            for name, data in files.items():
                (tmp / name).write_bytes(data)
            write_manifest(tmp, [*shards, STATE_FILE, *files])
    barrier()  # nobody reads or rewrites `path` before rank 0 has swapped it in
    return path if main else None


def _loss_tensors(learn: Learner) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    if learn.loss_log:
        out["loss.log"] = torch.cat(learn.loss_log)
    if learn.epoch_losses:
        out["loss.epoch"] = torch.stack([x.float() for x in learn.epoch_losses]).cpu()
    return out


def _document_files(
    learn: Learner, path: Path, opt_doc: dict[str, Any], rngs: list[Any]
) -> dict[str, bytes]:
    """``training.json`` and the model's spec files (when it was built from a spec)."""
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
        "seed": learn.fit_seed,
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
    try:
        _, model_docs = model_files(learn.model, path)
        files.update(model_docs)
    except CheckpointError:
        pass  # not built from a spec: the checkpoint still resumes, load() cannot rebuild
    return files


# -- loading -----------------------------------------------------------------------------


def _recovered(path: Path) -> Path:
    """``path`` after finishing or undoing a swap a killed process left half done."""
    if path.parent.is_dir():
        recover_folder(path)
    return path


def _verified(path: str | os.PathLike[str], require: tuple[str, ...]) -> Path:
    path = _recovered(Path(path))
    if not path.is_dir():
        raise CheckpointError(
            f"`{path}` is missing: expected a training checkpoint folder written by "
            "Learner.save_checkpoint or the SaveCheckpoint callback."
        )
    verify_manifest(path, require=require)
    return path


def read_training_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The verified and validated ``training.json`` of a checkpoint.

    Raises:
        CheckpointError: missing, corrupt (SHA-256), not a training checkpoint, or a field
            of the wrong type or range or missing (naming the field).
    """
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
    validate_training_document(doc, where=where)
    return _unplain(doc)


def load_model_weights(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load a checkpoint's weights into ``model`` for inference (verified; RNGs untouched).

    Returns:
        ``model``.

    Raises:
        CheckpointError: a missing or corrupt checkpoint (naming the file), or weights that
            do not fit the model (naming the tensor, the expected and the found shape).
    """
    folder = _verified(path, (MODEL_FILE,))
    return load_weights(model, folder / MODEL_FILE)


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
    sharded = _recovered(Path(path)).joinpath(SHARDED_DIR).is_dir()
    folder = _verified(path, (STATE_FILE, TRAINING_FILE) + (() if sharded else (MODEL_FILE,)))
    doc = read_training_document(folder)
    tensors = read_tensors(folder / STATE_FILE, device=str(learn.device))
    if sharded:  # resharded to this run's processes (any number, one included)
        load_sharded(folder / SHARDED_DIR, learn.model, learn.opt)
    else:
        load_weights(learn.model, folder / MODEL_FILE, device=learn.device)
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
    learn.fit_seed = int(doc["seed"])
    learn.loaders["train"].seed = learn.fit_seed
    learn.history = list(doc["history"])
    learn.loss_log = [tensors["loss.log"].cpu()] if "loss.log" in tensors else []
    epoch_losses = tensors.get("loss.epoch")
    learn.epoch_losses = (
        list(epoch_losses.unbind()) if epoch_losses is not None and learn.start_iter > 0 else []
    )
    rngs = doc["rng"]
    learn.pending_resume = {
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
    pending = getattr(learn, "pending_resume", None)
    if not pending:
        return
    learn.pending_resume = None
    learn.cbs.load_state_dict(pending["callbacks"])
    if pending["scaler"] is not None and learn.scaler is not None:
        learn.scaler.load_state_dict(pending["scaler"])
    set_rng_state(pending["rng"])
