"""``nnblocks.save`` / ``nnblocks.load``: a model folder in the layout the community shares.

A saved model is a folder::

    config.json             what to build (nnblocks.spec_of(model)), the nnblocks version,
                            and the package or plugin file behind every part not built in
    model.safetensors       the state dict; tied tensors stored once
    data.json               tokenizers and fitted statistics, when saved with ``data=``
    tokenizer.json          the subword tokenizer in the `tokenizers` library's format, and
    tokenizer_config.json   its special tokens, when there is one
    README.md               a generated model card (front matter ``library_name: nnblocks``)
    manifest.json           SHA-256 and size of every file above but the card, written last

Loading never unpickles and needs no user code that knew the architecture: the model is
built on the meta device from the spec, compared tensor by tensor with the weights file's
header, and only then allocated, its tensors read from the memory-mapped file. Folders
written before format 2 (``spec.json`` instead of ``config.json``) load as well.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnblocks.errors import CheckpointError, NNBlocksError
from nnblocks.io.atomic import atomic_files
from nnblocks.io.manifest import MANIFEST_NAME, dump_manifest, make_manifest, verify_manifest
from nnblocks.io.model_card import CARD_NAME, model_card
from nnblocks.io.pickle_policy import is_pickle_path, pickle_refusal, read_pickle_weights
from nnblocks.io.safetensors_check import check_file
from nnblocks.io.safetensors_io import read_tensors, serialize_tensors
from nnblocks.io.spec_file import (
    CONFIG_NAME,
    check_parts,
    dump_spec_document,
    model_document_path,
    read_spec_document,
    spec_document,
)
from nnblocks.io.weights import (
    check_weights,
    load_weights,
    materialize,
    parameters_on_meta,
    same_dtype,
    unstored_bytes,
)
from nnblocks.plugins import plugins_from_env
from nnblocks.registry import build

__all__ = [
    "DATA_NAME",
    "TOKENIZER_CONFIG_NAME",
    "TOKENIZER_NAME",
    "WEIGHTS_NAME",
    "load",
    "model_files",
    "save",
]

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
DATA_NAME = "data.json"
TOKENIZER_NAME = "tokenizer.json"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
# Buffers a build allocates beyond what the weights file holds (recomputed tables such as
# rotary sines) may exceed the file's size by this much before a spec is called absurd.
_UNSTORED_ALLOWANCE = 256 * 2**20


def _tokenizer_files(tokenizer: Any) -> dict[str, bytes]:
    """``tokenizer.json`` + ``tokenizer_config.json`` for a tokenizer that can write them."""
    export = getattr(tokenizer, "tokenizer_json", None)
    text = export() if callable(export) else None
    if text is None:
        return {}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", **tokenizer.special_tokens()}
    return {
        TOKENIZER_NAME: text.encode("utf-8"),
        TOKENIZER_CONFIG_NAME: (json.dumps(config, indent=1) + "\n").encode("utf-8"),
    }


def _main_tokenizer(data: Any) -> Any:
    # tokenizer.json holds one tokenizer: the bundle's only one, or the one reading text
    # ("text") or writing it ("tgt"); the others stay in data.json.
    tokenizers = dict(getattr(data, "tokenizers", None) or {})
    if len(tokenizers) == 1:
        return next(iter(tokenizers.values()))
    return tokenizers.get("text") or tokenizers.get("tgt")


def model_files(
    model: nn.Module, folder: Path, *, data: Any = None, tokenizer: Any = None
) -> tuple[dict[str, torch.Tensor], dict[str, bytes]]:
    """What a model folder holds besides its card and manifest: the state dict (for
    ``model.safetensors``) and ``{file name: bytes}`` for the others.

    The training checkpoints write the same files, so a run folder holds one format.

    Raises:
        CheckpointError: the model was not built from a spec, or its spec is not plain data.
    """
    document = spec_document(model, folder=folder)
    files = {CONFIG_NAME: dump_spec_document(document)}
    if data is not None and hasattr(data, "state"):
        files[DATA_NAME] = json.dumps(data.state(), ensure_ascii=False, default=str).encode()
    if tokenizer is None and data is not None:
        tokenizer = _main_tokenizer(data)
    if tokenizer is not None:
        files.update(_tokenizer_files(tokenizer))
    return model.state_dict(), files


def save(
    model: nn.Module,
    folder: str | os.PathLike[str],
    *,
    data: Any = None,
    tokenizer: Any = None,
    recipe: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Save a model built from a spec to ``folder`` (created if needed), with a model card.

    Every file is written to a temporary file in the folder, fsynced, then renamed over the
    old one; the manifest is renamed last. If anything fails before the renames, the folder
    is left exactly as it was.

    Args:
        model: a model built by ``nnblocks.build`` (it remembers its spec).
        folder: the model folder.
        data: a ``DataBundle`` (or anything with ``.state()`` and ``.tokenizers``): its
            tokenizers and fitted statistics go to ``data.json``, its text tokenizer also
            to ``tokenizer.json``.
        tokenizer: the tokenizer to write as ``tokenizer.json`` (default: the data's).
        recipe: the recipe the model was trained with, shown in the model card.
        metrics: final metrics, shown in the model card.

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
    tensors, files = model_files(model, folder, data=data, tokenizer=tokenizer)  # fails early
    task = getattr(getattr(data, "task", None), "name", None)
    card = model_card(model, recipe=recipe, metrics=metrics, task=task, files=sorted(files))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"could not create the folder `{folder}`: {exc}.") from exc
    before = _listed(folder)
    with atomic_files(folder) as staging:
        weights = staging.path(WEIGHTS_NAME)
        staged = {name: staging.path(name) for name in files}
        card_path = staging.path(CARD_NAME)
        manifest = staging.path(MANIFEST_NAME)  # asked for last, so renamed last
        serialize_tensors(weights, tensors, {"format": "pt"}, name=folder / WEIGHTS_NAME)
        for name, content in files.items():
            _write(staged[name], content, folder / name)
        _write(card_path, card.encode("utf-8"), folder / CARD_NAME)
        # The card is documentation that people edit (as on the Hub): left out of the
        # manifest, so editing it does not make the weights unloadable.
        listed = make_manifest({WEIGHTS_NAME: weights, **staged})
        _write(manifest, dump_manifest(listed), folder / MANIFEST_NAME)
    _remove_stale(folder, before - {WEIGHTS_NAME, *files})
    return folder


def _listed(folder: Path) -> set[str]:
    """The model files the folder's current manifest lists (what an earlier save wrote)."""
    from nnblocks.io.spec_file import SPEC_NAME

    try:
        files = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    known = {SPEC_NAME, DATA_NAME, TOKENIZER_NAME, TOKENIZER_CONFIG_NAME}
    return {name for name in files if name in known} if isinstance(files, dict) else set()


def _remove_stale(folder: Path, names: set[str]) -> None:
    # A file an earlier save wrote and this one did not (a format-1 spec.json, a tokenizer
    # the model no longer has) would contradict the new folder. Files the manifest did not
    # list (e.g. a data.json written by bundle.save_state) are the user's: left alone.
    for name in sorted(names):
        if (folder / name).is_file():
            try:
                (folder / name).unlink()
            except OSError as exc:
                log.warning("could not remove the stale `%s`: %s", folder / name, exc)


def _write(temp: Path, data: bytes, target: Path) -> None:
    try:
        temp.write_bytes(data)
    except OSError as exc:
        raise CheckpointError(f"could not write `{target}`: {exc}.") from exc


def _build(document: Mapping[str, Any], spec_path: Path) -> nn.Module:
    try:
        model = build(document["spec"], document["kind"])
    except NNBlocksError as exc:
        raise CheckpointError(f"`{spec_path}`: the model could not be rebuilt: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise CheckpointError(
            f"`{spec_path}`: the spec built a {type(model).__name__}, expected an nn.Module."
        )
    return model


def _meta_build(document: Mapping[str, Any], spec_path: Path) -> nn.Module | None:
    """The model on the meta device, or None when one of its parts cannot live there."""
    try:
        with torch.device("meta"):
            return _build(document, spec_path)
    except CheckpointError:
        raise
    except Exception as exc:  # a part that computes with its weights in __init__
        log.debug(
            "`%s` cannot be built on the meta device (%s); building it for real", spec_path, exc
        )
        return None


def _check_unstored(model: nn.Module, weights: Path) -> None:
    extra, stored = unstored_bytes(model), check_file(weights).data_size
    if extra > stored + _UNSTORED_ALLOWANCE:
        raise CheckpointError(
            f"`{weights}`: the model rebuilt from its spec would allocate {extra} bytes of "
            f"buffers that no file holds, expected at most {stored + _UNSTORED_ALLOWANCE} "
            f"(the weights' {stored} bytes plus {_UNSTORED_ALLOWANCE}); the spec's sizes "
            "(e.g. max_len) disagree with the weights."
        )


def _rebuild(
    document: Mapping[str, Any], spec_path: Path, weights: Path, *, strict: bool, device: str
) -> nn.Module:
    meta = _meta_build(document, spec_path)
    if meta is not None:
        stored = check_weights(meta, weights, strict=strict)  # before anything is allocated
        _check_unstored(meta, weights)
        del meta
        if strict:
            try:
                with parameters_on_meta():
                    model: nn.Module | None = _build(document, spec_path)
            except CheckpointError:
                raise
            except Exception as exc:
                log.debug("parameters on meta failed for `%s`: %s", spec_path, exc)
                model = None
            if model is not None:
                same_dtype(model, stored)
                if materialize(model, read_tensors(weights, device=device)):
                    return model
    model = _build(document, spec_path)
    same_dtype(model, check_weights(model, weights, strict=strict))
    return load_weights(model, weights, strict=strict, device=device)


def _load_pickle(folder: Path, weights: Path, *, trust_pickle: bool, strict: bool) -> nn.Module:
    if not trust_pickle:
        raise pickle_refusal(weights)
    spec_path = model_document_path(folder)
    if not spec_path.is_file():
        raise CheckpointError(
            f"`{weights}` holds weights but `{spec_path}` is missing, so the model cannot be "
            "rebuilt. Build it yourself, then model.load_state_dict("
            "nnblocks.io.read_pickle_weights(path, trust_pickle=True)) and nnblocks.save it."
        )
    document = read_spec_document(spec_path)
    check_parts(document, path=spec_path)
    model = _build(document, spec_path)
    tensors = read_pickle_weights(weights, trust_pickle=True)
    same_dtype(model, {k: (tuple(t.shape), t.dtype) for k, t in tensors.items()})
    try:
        model.load_state_dict(tensors, strict=strict)
    except RuntimeError as exc:  # missing/unexpected keys or shapes that disagree
        raise CheckpointError(
            f"`{weights}` does not fit the model rebuilt from its spec: {exc}"
        ) from exc
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
    """Load a model saved by :func:`save`: verify, check against the weights, then build.

    Plugins named in ``NNBLOCKS_PLUGINS`` are imported first, as the command line does.

    Pickle policy: a ``.pt``/``.pth``/``.bin``/``.pkl``/``.ckpt`` file (or a folder holding
    only such weights) is refused unless ``trust_pickle=True``; then it is read with
    ``torch.load(weights_only=True)`` and refused if that fails; there is never a fallback to
    a full unpickle. A pickle needs a ``config.json`` (or ``spec.json``) beside it.

    Args:
        folder: the model folder (or a pickle weights file inside one); a training
            checkpoint folder works too.
        trust_pickle: allow pickle-format weights, read with the restricted unpickler.
        map_location: the device to put the model on.
        strict: every tensor name must match both ways.

    Returns:
        The model, in eval mode, with the dtype it was saved in.

    Raises:
        CheckpointError: a missing folder or manifest; a missing, resized or corrupt file
            (SHA-256); an invalid safetensors file; a part that is not registered (naming
            the package to install or the plugin file to pass); untrusted pickle; a tensor
            whose shape or dtype disagrees with the spec (naming the tensor, the expected
            and the found shape), found before the model is allocated.

    Example:
        >>> model = nnblocks.load("runs/lm")                    # doctest: +SKIP
    """
    folder = Path(folder)
    plugins_from_env()
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
    spec_path = model_document_path(folder)
    if spec_path.is_file() and not (folder / MANIFEST_NAME).is_file():
        read_spec_document(spec_path)  # a Hugging Face folder is pointed to the importer
    verify_manifest(folder, require=(spec_path.name, WEIGHTS_NAME))
    document = read_spec_document(spec_path)
    check_parts(document, path=spec_path)
    device = str(torch.device(map_location))
    model = _rebuild(document, spec_path, folder / WEIGHTS_NAME, strict=strict, device=device)
    return model.to(map_location).eval()
