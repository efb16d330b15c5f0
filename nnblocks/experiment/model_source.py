"""A recipe's model: built from a spec, or started from a checkpoint (``model: {from: ...}``).

    model: {name: transformer_lm, dim: 256}                 # built from the spec
    model:                                                  # or from a saved folder
      from: runs/lm/model                                   # nnblocks.save / nnblocks import
      surgery:                                              # then swapped, in order
        - {pattern: "decoder.layers.2-3.self_attention", spec: {name: gqa, kv_heads: 1}}

``from`` names an nnblocks model folder (``config.json`` written by ``nnblocks.save``, or a
training checkpoint) or a Hugging Face folder (imported with
``nnblocks.interop.from_transformers``). The surgery records are those of
``nnblocks.surgery.apply_surgery``; the swapped parts start fresh, every other weight is
the checkpoint's, so ``nnblocks train`` fine-tunes a pretrained model with new parts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnblocks.errors import SpecError
from nnblocks.io import CONFIG_NAME, SPEC_NAME, is_nnblocks_config
from nnblocks.registry import build
from nnblocks.spec import close_matches, spec_path
from nnblocks.surgery import apply_surgery

__all__ = ["FROM_KEY", "build_recipe_model", "check_recipe_model", "is_from_checkpoint"]

FROM_KEY = "from"
_KEYS = (FROM_KEY, "surgery")


def is_from_checkpoint(spec: Any) -> bool:
    """Whether a recipe's ``model`` section starts from a checkpoint (``{from: PATH}``)."""
    return isinstance(spec, Mapping) and FROM_KEY in spec


def _source(spec: Mapping[str, Any]) -> tuple[Path, str, list[Any]]:
    """(folder, "nnblocks" or "transformers", surgery records), checked."""
    unknown = sorted(set(spec) - set(_KEYS))
    if unknown:
        hints = {k: close_matches(k, _KEYS) for k in unknown}
        raise SpecError(
            f"unknown key(s) {unknown} beside `from`; expected only {list(_KEYS)} "
            f"(close matches: {hints}). The architecture comes from the checkpoint; change "
            "parts with `surgery` records.",
            path="model",
        )
    where = f"model.{FROM_KEY}"
    ref = spec[FROM_KEY]
    if not isinstance(ref, str) or not ref:
        raise SpecError(f"expected a folder path. Received: {ref!r:.80}", path=where)
    folder = Path(ref).expanduser()
    surgery = spec.get("surgery", [])
    if not isinstance(surgery, list):
        raise SpecError(
            f'expected a list of {{"pattern": ..., "spec": ...}} records. Received: {surgery!r:.80}',
            path="model.surgery",
        )
    if (folder / CONFIG_NAME).is_file() and is_nnblocks_config(folder / CONFIG_NAME):
        return folder, "nnblocks", surgery
    if (folder / SPEC_NAME).is_file():
        return folder, "nnblocks", surgery
    if (folder / CONFIG_NAME).is_file():
        return folder, "transformers", surgery
    raise SpecError(
        f"`{folder}` is not a model folder: expected `{CONFIG_NAME}` (an nnblocks folder from "
        "nnblocks.save or `nnblocks import`, or a Hugging Face folder).",
        path=where,
    )


def _load(folder: Path, kind: str) -> nn.Module:
    if kind == "nnblocks":
        from nnblocks.io import load

        return load(folder)
    try:  # imported here: the Hugging Face importer is an optional part of nnblocks.interop
        from nnblocks.interop import from_transformers  # type: ignore[attr-defined]
    except ImportError as exc:
        raise SpecError(
            f"`{folder}` is a Hugging Face folder, and this nnblocks has no "
            "nnblocks.interop.from_transformers to import it; convert it first.",
            path=f"model.{FROM_KEY}",
        ) from exc
    return from_transformers(str(folder))


def _apply(model: nn.Module, surgery: list[Any]) -> nn.Module:
    return apply_surgery(model, surgery, path="model") if surgery else model


def build_recipe_model(
    spec: Any, model_args: Mapping[str, Any], *, device: str | None = None
) -> nn.Module:
    """The model of a recipe's ``model`` section: built, or loaded and swapped.

    Args:
        spec: the ``model`` section (a model spec, or ``{from: PATH, surgery: [...]}``).
        model_args: the task's model defaults (offered to a spec; a checkpoint has its own).
        device: ``"meta"`` to build without memory (a spec only).

    Returns:
        The model (in train mode when loaded from a checkpoint).

    Raises:
        SpecError: a bad spec, a missing folder, unknown keys beside ``from``, or a
            surgery record that does not apply (naming ``model.surgery[i]``).
        CheckpointError: the folder cannot be loaded.
    """
    if not is_from_checkpoint(spec):
        with spec_path("model"):
            if device == "meta":
                with torch.device("meta"):
                    return build(spec, "model", **model_args)
            return build(spec, "model", **model_args)
    folder, kind, surgery = _source(spec)
    return _apply(_load(folder, kind), surgery).train()


def check_recipe_model(spec: Any, model_args: Mapping[str, Any]) -> None:
    """Check a recipe's ``model`` section without spending memory on weights.

    A spec is built on the meta device; a checkpoint's folder is checked, and for an
    nnblocks folder its own spec is built on the meta device with the surgery applied (so
    a pattern that matches no slot fails here, before any data is made).

    Raises:
        SpecError, CheckpointError: as :func:`build_recipe_model`.
    """
    if not is_from_checkpoint(spec):
        build_recipe_model(spec, model_args, device="meta")
        return
    folder, kind, surgery = _source(spec)
    if kind != "nnblocks":
        return  # a Hugging Face config is checked by the importer when it runs
    from nnblocks.io.spec_file import check_parts, model_document_path, read_spec_document

    path = model_document_path(folder)
    document = read_spec_document(path)
    check_parts(document, path=path)
    with spec_path("model"), torch.device("meta"):
        _apply(build(document["spec"], document["kind"]), surgery)
