"""`to_transformers`: an nnblocks model as a Hugging Face folder that transformers loads.

The exporter reads a transformers config off the model's parts, rebuilds the nnblocks model
that config imports as (on the meta device), and requires every slot to hold the same part
with the same options: a slot whose part has no counterpart (a swapped attention, say)
fails naming the slot and the part, instead of writing a model that computes something else.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnblocks.errors import SpecError
from nnblocks.interop._arch import Architecture
from nnblocks.interop._weights import Config, export_weights
from nnblocks.interop.importing import ARCHITECTURES
from nnblocks.io.atomic import atomic_write_text
from nnblocks.io.safetensors_io import write_tensors
from nnblocks.registry import build, kind_of, spec_of

__all__ = ["to_transformers"]

# String options that are values, not nested part specs (those are compared as parts).
_VALUE_STRINGS = {"norm_placement", "approximate", "pool"}


def _options(module: nn.Module) -> dict[str, Any]:
    """A part's constructor arguments with defaults filled; nested part specs left out."""
    spec = spec_of(module)
    given = {k: v for k, v in spec.items() if k not in ("name", "surgery")}
    try:
        bound = inspect.signature(type(module)).bind_partial(**given)
        bound.apply_defaults()
        options = dict(bound.arguments)
    except (TypeError, ValueError):
        options = given
    for key, value in options.items():
        built = getattr(module, key, None)  # a None default the part resolved (hidden=4*dim)
        if value is None and isinstance(built, (int, float, bool)):
            options[key] = built
    return {
        k: v
        for k, v in options.items()
        if k in _VALUE_STRINGS or not isinstance(v, (str, dict, type, nn.Module))
    }


def _slots(model: nn.Module) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """slot path -> (kind, part name, options) for every part built by the registry."""
    found = {}
    for path, module in model.named_modules():
        kind = kind_of(module)
        if kind is not None and path:
            found[path] = (kind, spec_of(module)["name"], _options(module))
    return found


def _differences(model: nn.Module, reference: nn.Module, class_name: str) -> list[str]:
    ours, theirs = _slots(model), _slots(reference)
    problems = []
    for path in sorted(set(ours) | set(theirs)):
        if path not in theirs:
            problems.append(
                f"slot `{path}` holds part `{ours[path][1]}` ({ours[path][0]}), which "
                f"{class_name} has no counterpart for"
            )
        elif path not in ours:
            problems.append(f"slot `{path}` is missing; {class_name} needs `{theirs[path][1]}`")
        elif ours[path][1] != theirs[path][1]:
            problems.append(
                f"slot `{path}` holds part `{ours[path][1]}`, which has no counterpart in "
                f"{class_name} (it has `{theirs[path][1]}` there)"
            )
        elif ours[path][2] != theirs[path][2]:
            changed = {
                k: (ours[path][2].get(k), theirs[path][2].get(k))
                for k in set(ours[path][2]) | set(theirs[path][2])
                if ours[path][2].get(k) != theirs[path][2].get(k)
            }
            detail = ", ".join(f"{k}={a!r} (counterpart: {b!r})" for k, (a, b) in changed.items())
            problems.append(
                f"slot `{path}`: part `{ours[path][1]}` has options {class_name} cannot "
                f"express: {detail}"
            )
    if _ties(model) != _ties(reference):
        problems.append(f"weight tying differs from {class_name}'s")
    return problems


def _ties(model: nn.Module) -> list[list[str]]:
    return sorted(sorted(group) for group in getattr(model, "tied_parameters", []))


def _candidates(model: nn.Module) -> list[tuple[Architecture, str, str]]:
    """(architecture, variant, class name) pairs whose nnblocks model has this model's name."""
    name = spec_of(model)["name"]
    found = []
    for arch in ARCHITECTURES.values():
        for class_name, variant in arch.variants.items():
            if arch.to_config is None:
                continue
            if name == (
                "transformer_classifier" if arch.model_type == "bert" else "transformer_lm"
            ):
                found.append((arch, variant, class_name))
    return found


def _match(model: nn.Module) -> tuple[Architecture, str, dict[str, Any]]:
    best: tuple[int, list[str]] | None = None
    for arch, variant, class_name in _candidates(model):
        assert arch.to_config is not None
        try:
            config = arch.to_config(model, variant)
            cfg = Config(config, arch.config_class, "exported config")
            with torch.device("meta"):
                reference = build(arch.spec(cfg, variant), "model")
        except (AttributeError, KeyError, TypeError, SpecError):
            continue  # this architecture cannot even describe the model
        problems = _differences(model, reference, class_name)
        if not problems:
            return arch, variant, config
        if best is None or len(problems) < best[0]:
            best = (len(problems), [f"as {class_name}: " + p for p in problems])
    supported = ", ".join(n for a in ARCHITECTURES.values() if a.to_config for n in a.variants)
    detail = "; ".join(best[1][:6]) if best else f"no architecture maps `{spec_of(model)['name']}`"
    raise SpecError(
        f"this model has no transformers counterpart ({detail}). Exportable: {supported}",
        path="to_transformers",
    )


def to_transformers(model: nn.Module, folder: str | Path) -> Path:
    """Write an nnblocks model as a Hugging Face folder (``config.json`` + ``model.safetensors``).

    ``transformers.AutoModelForCausalLM.from_pretrained(folder)`` (``AutoModelForMaskedLM``,
    ``AutoModelForSequenceClassification`` or ``AutoModel`` for BERT's variants) then loads a
    model with the same logits. The architecture is recognised from the model's parts: GPT-2,
    Llama, Mistral, Qwen2 and BERT, as ``from_transformers`` builds them.

    Args:
        model: an nnblocks model built by the registry (e.g. by ``from_transformers``).
        folder: where to write; created if needed.

    Returns:
        The folder.

    Raises:
        SpecError: a slot whose part (or an option of it) has no transformers counterpart,
            naming the slot and the part; a model not built from a spec.

    Example:
        >>> nnblocks.interop.to_transformers(model, "out/llama")  # doctest: +SKIP
        >>> transformers.AutoModelForCausalLM.from_pretrained("out/llama")  # doctest: +SKIP
    """
    arch, variant, config = _match(model)
    cfg = Config(config, arch.config_class, "exported config")
    prefix = "" if variant == "base" else arch.base_prefix
    rules, _ = arch.rules(cfg, variant, prefix)
    tensors = export_weights(model, rules)
    dtypes = {t.dtype for t in tensors.values()}
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        **config,
        "dtype": str(dtypes.pop()).removeprefix("torch.") if len(dtypes) == 1 else "float32",
    }
    write_tensors(out / "model.safetensors", tensors, metadata={"format": "pt"})
    atomic_write_text(out / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out
