"""Where pretrained weights come from: a Hugging Face folder or a transformers model.

A folder is read without transformers and without running anything from it: ``config.json``
is parsed as JSON, and the safetensors files (``model.safetensors``, or the shards listed in
``model.safetensors.index.json``) are opened with ``safetensors.safe_open``, whose headers
give every tensor's name, shape and dtype before any data is read. Tensors are then read one
at a time from the memory-mapped files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnblocks.errors import CheckpointError, SpecError

__all__ = ["Source", "open_source"]

_SINGLE = "model.safetensors"
_INDEX = "model.safetensors.index.json"


class Source:
    """A config dict plus named tensors, read lazily.

    Attributes:
        config: the model's configuration (``config.json`` as a dict).
        architecture: the transformers class name (``"LlamaForCausalLM"``).
        where: a name for messages (the folder, or the model's class).
        shapes: tensor name -> shape, known without reading any data.
    """

    def __init__(self, config: dict[str, Any], architecture: str, where: str):
        self.config = config
        self.architecture = architecture
        self.where = where
        self.shapes: dict[str, tuple[int, ...]] = {}

    def read(self, name: str) -> torch.Tensor:
        """The tensor ``name`` (a CPU tensor; for a folder, read from its file now)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release open files."""


class _FolderSource(Source):
    def __init__(self, folder: Path, config: dict[str, Any], architecture: str):
        super().__init__(config, architecture, str(folder))
        from safetensors import safe_open  # the checkpoint format's own reader

        self._files: dict[str, Any] = {}
        self._file_of: dict[str, str] = {}
        for file in _weight_files(folder):
            try:
                handle = safe_open(str(file), framework="pt", device="cpu")
            except Exception as exc:  # safetensors raises its own error types
                raise CheckpointError(
                    f"{file}: expected a safetensors file. Received a file it cannot read: {exc}"
                ) from None
            self._files[file.name] = handle
            for name in handle.keys():
                self._file_of[name] = file.name
                self.shapes[name] = tuple(handle.get_slice(name).get_shape())

    def read(self, name: str) -> torch.Tensor:
        return self._files[self._file_of[name]].get_tensor(name)

    def close(self) -> None:
        self._files.clear()


class _ModelSource(Source):
    def __init__(self, model: nn.Module, config: dict[str, Any], architecture: str):
        super().__init__(config, architecture, type(model).__name__)
        self._tensors = model.state_dict()
        self.shapes = {k: tuple(v.shape) for k, v in self._tensors.items()}

    def read(self, name: str) -> torch.Tensor:
        return self._tensors[name].detach().cpu()


def _weight_files(folder: Path) -> list[Path]:
    index = folder / _INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            names = sorted(set(weight_map.values()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(
                f"{index}: expected a JSON index with a `weight_map` of tensor -> file. "
                f"Received: {exc!r}"
            ) from None
        files = []
        for name in names:
            path = folder / name
            if Path(name).name != name or not path.is_file():
                raise CheckpointError(
                    f"{index}: lists a shard `{name}` that is not a file in {folder}."
                )
            files.append(path)
        return files
    if (folder / _SINGLE).is_file():
        return [folder / _SINGLE]
    found = sorted(p.name for p in folder.iterdir())
    pickled = [n for n in found if n.endswith((".bin", ".pt", ".pth", ".ckpt"))]
    hint = (
        f" It holds {', '.join(pickled)}: pickled weights, which nnblocks does not load "
        "(loading a pickle can run code). Convert them to safetensors first."
        if pickled
        else ""
    )
    raise CheckpointError(
        f"{folder}: expected `{_SINGLE}` or `{_INDEX}`. Received a folder with: "
        f"{', '.join(found) or 'nothing'}.{hint}"
    )


def _refuse_remote_code(config: dict[str, Any], where: str) -> None:
    if config.get("auto_map") or config.get("trust_remote_code"):
        raise SpecError(
            "this model's code ships with the checkpoint (`auto_map` / trust_remote_code: a "
            "Python file in the folder defines the architecture). nnblocks never runs code "
            "from a model folder and maps only the architectures it knows, so it cannot "
            "import this one. Received: auto_map="
            f"{json.dumps(config.get('auto_map'))[:120]}",
            path=where,
        )


def open_source(source: Any) -> Source:
    """A ``Source`` for a folder (str or Path) or a transformers ``PreTrainedModel``.

    Raises:
        CheckpointError: a missing folder, config or weights file, or an unreadable one.
        SpecError: a model whose code comes from the checkpoint (``auto_map``), or a
            source of another type.
    """
    if isinstance(source, (str, Path)):
        folder = Path(source)
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise CheckpointError(
                f"{folder}: expected a Hugging Face model folder with `config.json`. "
                f"Received: {'a folder without it' if folder.is_dir() else 'no such folder'}"
            )
        try:
            config = json.loads(config_file.read_text())
        except ValueError as exc:
            raise CheckpointError(f"{config_file}: expected JSON. Received: {exc}") from None
        if not isinstance(config, dict):
            raise CheckpointError(f"{config_file}: expected a JSON object.")
        _refuse_remote_code(config, str(config_file))
        architectures = config.get("architectures") or []
        architecture = architectures[0] if architectures else str(config.get("model_type", ""))
        return _FolderSource(folder, config, architecture)
    config_obj = getattr(source, "config", None)
    if isinstance(source, nn.Module) and hasattr(config_obj, "to_dict"):
        config = config_obj.to_dict()
        where = type(source).__name__
        if type(source).__module__.startswith("transformers_modules"):
            raise SpecError(
                f"{where} was loaded with trust_remote_code: its code came with the "
                "checkpoint, and nnblocks maps only the architectures it knows.",
                path=where,
            )
        _refuse_remote_code(config, where)
        return _ModelSource(source, config, type(source).__name__)
    raise SpecError(
        "from_transformers expected a Hugging Face model folder (a path with config.json and "
        f"safetensors weights) or a transformers model. Received: {type(source).__name__}"
    )
