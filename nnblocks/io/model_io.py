"""``nnblocks.save`` / ``nnblocks.load``: a model as spec JSON + safetensors + SHA-256 manifest.

A saved model is a folder::

    spec.json            what to build (nnblocks.spec_of(model)) and which packages provide it
    model.safetensors    the state dict; tied tensors stored once
    manifest.json        SHA-256 and size of both, written last

Loading never unpickles and needs no user code that knew the architecture: the model is
rebuilt with ``nnblocks.build`` from the spec, and the weights are loaded into it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

from nnblocks.errors import CheckpointError, NNBlocksError
from nnblocks.io.atomic import atomic_files
from nnblocks.io.manifest import MANIFEST_NAME, dump_manifest, make_manifest, verify_manifest
from nnblocks.io.pickle_policy import is_pickle_path, pickle_refusal, read_pickle_weights
from nnblocks.io.safetensors_io import read_tensors, serialize_tensors
from nnblocks.io.spec_file import (
    SPEC_NAME,
    check_parts,
    dump_spec_document,
    read_spec_document,
    spec_document,
)
from nnblocks.registry import build

__all__ = ["WEIGHTS_NAME", "load", "save"]

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"


def save(model: nn.Module, folder: str | os.PathLike[str]) -> Path:
    """Save a model built from a spec to ``folder`` (created if needed).

    Every file is written to a temporary file in the folder, fsynced, then renamed over the
    old one; the manifest is renamed last. If anything fails before the renames, the folder
    is left exactly as it was.

    Args:
        model: a model built by ``nnblocks.build`` (it remembers its spec).
        folder: the checkpoint folder.

    Returns:
        The folder.

    Raises:
        CheckpointError: the model was not built from a spec, its spec is not plain data, or
            the folder cannot be written (naming the file).

    Example:
        >>> model = nnblocks.build({"name": "transformer_lm", "dim": 64}, vocab_size=100)
        >>> nnblocks.save(model, "runs/lm")                     # doctest: +SKIP
        >>> same = nnblocks.load("runs/lm")                      # doctest: +SKIP
    """
    folder = Path(folder)
    document = spec_document(model, folder=folder)  # fails before anything is written
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"could not create the folder `{folder}`: {exc}.") from exc
    with atomic_files(folder) as staging:
        weights = staging.path(WEIGHTS_NAME)
        spec = staging.path(SPEC_NAME)
        manifest = staging.path(MANIFEST_NAME)  # asked for last, so renamed last
        serialize_tensors(weights, model.state_dict(), {"format": "pt"}, name=folder / WEIGHTS_NAME)
        _write(spec, dump_spec_document(document), folder / SPEC_NAME)
        listed = make_manifest({WEIGHTS_NAME: weights, SPEC_NAME: spec})
        _write(manifest, dump_manifest(listed), folder / MANIFEST_NAME)
    return folder


def _write(temp: Path, data: bytes, target: Path) -> None:
    try:
        temp.write_bytes(data)
    except OSError as exc:
        raise CheckpointError(f"could not write `{target}`: {exc}.") from exc


def _rebuild(document: dict, spec_path: Path) -> nn.Module:
    check_parts(document, path=spec_path)
    try:
        model = build(document["spec"], document["kind"])
    except NNBlocksError as exc:
        raise CheckpointError(f"`{spec_path}`: the model could not be rebuilt: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise CheckpointError(
            f"`{spec_path}`: the spec built a {type(model).__name__}, expected an nn.Module."
        )
    return model


def _match_dtype(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    # A model saved in half precision comes back in half precision: load_state_dict alone
    # would silently cast the weights to the freshly built model's float32.
    saved = {t.dtype for t in tensors.values() if t.is_floating_point()}
    built = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if len(saved) == 1 and saved != built:
        model.to(saved.pop())


def _load_weights(
    model: nn.Module, tensors: dict[str, torch.Tensor], *, source: Path, strict: bool
) -> None:
    _match_dtype(model, tensors)
    try:
        result = model.load_state_dict(tensors, strict=strict)
    except RuntimeError as exc:  # missing/unexpected keys or shapes that disagree
        raise CheckpointError(
            f"`{source}` does not fit the model rebuilt from its spec: {exc}"
        ) from exc
    if result.missing_keys or result.unexpected_keys:
        log.warning(
            "loading %s with strict=False: missing %s, unexpected %s",
            source,
            result.missing_keys,
            result.unexpected_keys,
        )


def _load_pickle(folder: Path, weights: Path, *, trust_pickle: bool, strict: bool) -> nn.Module:
    if not trust_pickle:
        raise pickle_refusal(weights)
    spec_path = folder / SPEC_NAME
    if not spec_path.is_file():
        raise CheckpointError(
            f"`{weights}` holds weights but `{spec_path}` is missing, so the model cannot be "
            "rebuilt. Build it yourself, then model.load_state_dict("
            "nnblocks.io.read_pickle_weights(path, trust_pickle=True)) and nnblocks.save it."
        )
    model = _rebuild(read_spec_document(spec_path), spec_path)
    tensors = read_pickle_weights(weights, trust_pickle=True)
    _load_weights(model, tensors, source=weights, strict=strict)
    return model


def _pickle_weights(folder: Path) -> list[Path]:
    if (folder / MANIFEST_NAME).exists() or (folder / WEIGHTS_NAME).exists():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and is_pickle_path(p))


def load(
    folder: str | os.PathLike[str],
    *,
    trust_pickle: bool = False,
    map_location: str | torch.device = "cpu",
    strict: bool = True,
) -> nn.Module:
    """Load a model saved by :func:`save`: verify, rebuild from the spec, load the weights.

    Pickle policy: a ``.pt``/``.pth``/``.bin``/``.pkl``/``.ckpt`` file (or a folder holding
    only such weights) is refused unless ``trust_pickle=True``; then it is read with
    ``torch.load(weights_only=True)`` and refused if that fails; there is never a fallback to
    a full unpickle. A pickle needs a ``spec.json`` beside it to be rebuilt.

    Args:
        folder: the checkpoint folder (or a pickle weights file inside one).
        trust_pickle: allow pickle-format weights, read with the restricted unpickler.
        map_location: the device to put the model on.
        strict: passed to ``load_state_dict``: every key must match.

    Returns:
        The model, in eval mode, with the dtype it was saved in.

    Raises:
        CheckpointError: a missing folder or manifest; a missing, resized or corrupt file
            (SHA-256); an invalid safetensors file; a part that is not registered (naming
            the package to install); untrusted pickle; weights that do not fit the spec.

    Example:
        >>> model = nnblocks.load("runs/lm")                    # doctest: +SKIP
    """
    folder = Path(folder)
    if folder.is_file():
        if is_pickle_path(folder):
            model = _load_pickle(folder.parent, folder, trust_pickle=trust_pickle, strict=strict)
            return model.to(map_location).eval()
        raise CheckpointError(
            f"`{folder}` is a file: expected a folder written by nnblocks.save (for a lone "
            "safetensors file use nnblocks.io.read_tensors)."
        )
    if not folder.is_dir():
        raise CheckpointError(f"`{folder}` is missing: expected a folder written by nnblocks.save.")
    pickles = _pickle_weights(folder)
    if pickles:
        if not trust_pickle:
            raise pickle_refusal(pickles[0])
        if len(pickles) > 1:
            raise CheckpointError(
                f"`{folder}` holds several pickle files ({', '.join(p.name for p in pickles)}); "
                "pass the one to load."
            )
        model = _load_pickle(folder, pickles[0], trust_pickle=True, strict=strict)
        return model.to(map_location).eval()
    verify_manifest(folder, require=(SPEC_NAME, WEIGHTS_NAME))
    model = _rebuild(read_spec_document(folder / SPEC_NAME), folder / SPEC_NAME)
    tensors = read_tensors(folder / WEIGHTS_NAME)
    _load_weights(model, tensors, source=folder / WEIGHTS_NAME, strict=strict)
    return model.to(map_location).eval()
