"""The model document: what to build and which packages provide its parts.

A saved model's ``config.json`` (the name the community's tools look for; ``spec.json`` in
folders written before format 2, still read)::

    {"library_name": "nnblocks", "format": "nnblocks.model", "format_version": 2,
     "nnblocks_version": "0.1.0", "kind": "model",
     "spec": {"name": "transformer_lm", "dim": 256, ...},
     "parts": [{"kind": "model", "name": "transformer_lm", "source": "nnblocks"},
               {"kind": "attention", "name": "my_attention", "source": "my_plugin",
                "package": "my-plugin-dist"},
               {"kind": "norm", "name": "my_norm", "source": "nnblocks_user_...",
                "plugin": "my_norm.py"}, ...]}

``parts`` lists every registered part inside the model with the top-level module that
registered it and, for parts that are not built in, the distribution to install
(``package``) or the plugin file to pass (``plugin``), so loading where a part is missing
says what to install instead of failing deep inside ``build``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from nnblocks.errors import CheckpointError, RegistryError, SpecError
from nnblocks.io._json import parse_json, read_small_file
from nnblocks.plugins import ENV_VAR, distribution_of, plugin_file_of
from nnblocks.registry import get_entry, kind_of, spec_of

__all__ = [
    "CONFIG_NAME",
    "SPEC_NAME",
    "check_parts",
    "dump_spec_document",
    "is_nnblocks_config",
    "model_document_path",
    "read_spec_document",
    "spec_document",
]

CONFIG_NAME = "config.json"
SPEC_NAME = "spec.json"  # the name before format 2; read, never written
LIBRARY_NAME = "nnblocks"
_FORMAT = "nnblocks.model"
_FORMAT_VERSION = 2
_MAX_SPEC_BYTES = 16 * 1024 * 1024


def _first_impure(value: Any, where: str) -> tuple[str, Any] | None:
    """The path and value of the first thing in ``value`` that JSON cannot hold exactly."""
    if value is None or isinstance(value, (bool, int, str)):
        return None
    if isinstance(value, float):
        return None if value == value and abs(value) != float("inf") else (where, value)
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            if (found := _first_impure(item, f"{where}[{i}]")) is not None:
                return found
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where}[{key!r}]", key
            if (found := _first_impure(item, f"{where}.{key}")) is not None:
                return found
        return None
    return where, value


def _source(kind: str, name: str, module: nn.Module) -> str:
    try:
        return get_entry(kind, name).source
    except (RegistryError, SpecError):  # unregistered since it was built
        return type(module).__module__.split(".")[0]


def _part_record(kind: str, name: str, module: nn.Module) -> dict[str, str]:
    source = _source(kind, name, module)
    record = {"kind": kind, "name": name, "source": source}
    if source in ("nnblocks", "__main__"):
        return record
    plugin = plugin_file_of(source)
    if plugin is not None:
        record["plugin"] = plugin.name
        return record
    package = distribution_of(source)
    if package is not None:
        record["package"] = package
    return record


def spec_document(model: nn.Module, *, folder: str | os.PathLike[str] = "") -> dict[str, Any]:
    """The content of ``spec.json`` for ``model``.

    Raises:
        CheckpointError: the model was not built from a spec by ``nnblocks.build`` (it could
            not be rebuilt), or its spec holds something that is not plain data.
    """
    where = f"`{folder}`" if folder else "the checkpoint"
    try:
        spec = spec_of(model)
    except SpecError:
        raise CheckpointError(
            f"cannot save {type(model).__name__} to {where}: it was not built from a spec by "
            "nnblocks.build, so nnblocks.load could not rebuild it. Register its class "
            "(@nnblocks.register('model', 'name')) and build it with nnblocks.build(...), or "
            "save its state_dict with nnblocks.io.write_tensors."
        ) from None
    impure = _first_impure(spec, "spec")
    if impure is not None:
        path, value = impure
        raise CheckpointError(
            f"cannot save {type(model).__name__} to {where}: `{path}` holds "
            f"{type(value).__name__} {value!r:.80}; expected plain JSON data (names, numbers, "
            "lists, dicts) so the model can be rebuilt. Pass parts as registered names or "
            "dict specs, not classes or instances."
        )
    parts: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for module in model.modules():
        kind = kind_of(module)
        if kind is None:
            continue
        name = spec_of(module)["name"]
        if (kind, name) not in seen:
            seen.add((kind, name))
            parts.append(_part_record(kind, name, module))
    from nnblocks import __version__

    return {
        "library_name": LIBRARY_NAME,
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "nnblocks_version": __version__,
        "kind": kind_of(model),
        "spec": spec,
        "parts": parts,
    }


def dump_spec_document(document: Mapping[str, Any]) -> bytes:
    """The bytes of ``spec.json``."""
    return (json.dumps(document, indent=1, allow_nan=False) + "\n").encode("utf-8")


def _is_str_record(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and all(isinstance(value.get(k), str) for k in ("kind", "name", "source"))
        and all(isinstance(value.get(k, ""), str) for k in ("package", "plugin"))
    )


def is_nnblocks_config(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is an nnblocks model document (not, e.g., a Hugging Face
    ``config.json``); False for anything else, including unreadable files."""
    try:
        doc = parse_json(read_small_file(path, _MAX_SPEC_BYTES, what="a config"), where="")
    except CheckpointError:
        return False
    return isinstance(doc, dict) and doc.get("format") == _FORMAT


def model_document_path(folder: str | os.PathLike[str]) -> Path:
    """``folder/config.json`` when it is an nnblocks document, else ``folder/spec.json``
    (format 1) when present, else ``folder/config.json`` (so messages name the new file)."""
    folder = Path(folder)
    config, legacy = folder / CONFIG_NAME, folder / SPEC_NAME
    if not config.is_file() and legacy.is_file():
        return legacy
    return config


def read_spec_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check ``spec.json``.

    Raises:
        CheckpointError: missing, too large, not JSON, or not an nnblocks model document.
    """
    path = Path(path)
    doc = parse_json(
        read_small_file(path, _MAX_SPEC_BYTES, what="the model spec"), where=f"`{path}`"
    )
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        hint = (
            " It looks like a Hugging Face model folder: import it with "
            "nnblocks.interop.from_transformers(folder) or `nnblocks import`."
            if isinstance(doc, dict) and "model_type" in doc
            else ""
        )
        raise CheckpointError(
            f"`{path}`: expected an nnblocks model spec (format `{_FORMAT}`).{hint}"
        )
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > _FORMAT_VERSION:
        raise CheckpointError(
            f"`{path}`: format_version {version!r:.40} is not supported; expected at most "
            f"{_FORMAT_VERSION}. It was written by nnblocks {doc.get('nnblocks_version')!r:.40}; "
            "upgrade nnblocks."
        )
    spec, kind, parts = doc.get("spec"), doc.get("kind"), doc.get("parts")
    if not (isinstance(spec, dict) and isinstance(spec.get("name"), str)):
        raise CheckpointError(f"`{path}`: expected `spec` to be a dict with a `name`.")
    if not isinstance(kind, str):
        raise CheckpointError(f"`{path}`: expected `kind` to be a kind name.")
    if not (isinstance(parts, list) and all(_is_str_record(p) for p in parts)):
        raise CheckpointError(
            f"`{path}`: expected `parts` to be a list of {{'kind', 'name', 'source'}} strings "
            "(and optional 'package' / 'plugin' strings)."
        )
    return doc


def check_parts(document: Mapping[str, Any], *, path: str | os.PathLike[str]) -> None:
    """Fail early, naming the package to install, if a part the model needs is not registered.

    Raises:
        CheckpointError: a listed part is not registered in this environment.
    """
    for part in document["parts"]:
        kind, name, source = part["kind"], part["name"], part["source"]
        try:
            get_entry(kind, name)
        except (RegistryError, SpecError) as exc:
            if source == "nnblocks":
                how = (
                    f"It is built into nnblocks {document.get('nnblocks_version')!r:.40}, which "
                    "wrote the file; upgrade nnblocks."
                )
            elif source == "__main__":
                how = "It was registered by a script; run the code that registers it first."
            elif part.get("plugin"):
                how = (
                    f"It was registered by the plugin file `{part['plugin']}`: pass it "
                    f"(`nnblocks --plugin {part['plugin']} ...`, or {ENV_VAR}=path/to/"
                    f"{part['plugin']} for nnblocks.load) and load again."
                )
            elif part.get("package"):
                how = (
                    f"It was registered by the package `{source}`: `pip install "
                    f"{part['package']}` (or import the module that registers it) and load again."
                )
            else:
                how = (
                    f"It was registered by the package `{source}`: install `{source}` (or "
                    "import the module that registers it) and load again."
                )
            raise CheckpointError(
                f"`{path}` needs the {kind} part `{name}`, which is not registered here. {how}"
            ) from exc
