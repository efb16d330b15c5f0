"""Where pretrained weights come from: a Hugging Face folder or a transformers model.

A folder is read without transformers and without running anything from it: ``config.json``
is parsed as JSON, and the headers of the safetensors files (``model.safetensors``, or the
shards listed in ``model.safetensors.index.json``) are validated strictly by nnblocks'
safetensors checker, which gives every tensor's name, shape, dtype and place in the file
before any data is read.

Data is then read straight into the model's own tensors (``readinto`` at the tensor's
offset), so the import holds each weight once: a memory-mapped read would keep every page
it touched resident until the file is closed, doubling the peak. A tensor that needs a
transform (a transpose, another dtype) is read into a temporary first.
"""

from __future__ import annotations

import ctypes
import io
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnblocks.errors import CheckpointError, SpecError
from nnblocks.io.safetensors_check import DTYPES, TensorEntry, check_file

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

    def read_into(self, name: str, target: torch.Tensor) -> bool:
        """Fill ``target`` with tensor ``name`` if that needs no conversion; False if not."""
        return False


class _FolderSource(Source):
    def __init__(self, folder: Path, config: dict[str, Any], architecture: str):
        super().__init__(config, architecture, str(folder))
        self._files: dict[str, io.BufferedReader] = {}
        self._entries: dict[str, tuple[str, TensorEntry, int]] = {}
        for file in _weight_files(folder):
            header = check_file(file)  # strict: a hostile header fails before any read
            start = 8 + header.header_size  # the data area follows the length and the JSON
            for name, entry in header.entries.items():
                self._entries[name] = (file.name, entry, start)
                self.shapes[name] = entry.shape
            self._files[file.name] = open(file, "rb")  # noqa: SIM115  (closed by close())

    def _dtype(self, entry: TensorEntry) -> torch.dtype:
        return DTYPES[entry.dtype]

    def _fill(self, name: str, target: torch.Tensor) -> None:
        file, entry, start = self._entries[name]
        handle = self._files[file]
        view = memoryview(
            (ctypes.c_char * (entry.end - entry.begin)).from_address(target.data_ptr())
        )
        handle.seek(start + entry.begin)
        done = 0
        while done < len(view):
            got = handle.readinto(view[done:])
            if not got:
                raise CheckpointError(f"{self.where}/{file}: ends inside tensor `{name}`.")
            done += got

    def read(self, name: str) -> torch.Tensor:
        _, entry, _ = self._entries[name]
        out = torch.empty(entry.shape, dtype=self._dtype(entry))
        if out.numel():
            self._fill(name, out)
        return out

    def read_into(self, name: str, target: torch.Tensor) -> bool:
        _, entry, _ = self._entries[name]
        if (
            sys.byteorder != "little"  # the format is little-endian
            or target.device.type != "cpu"
            or not target.is_contiguous()
            or target.dtype != self._dtype(entry)
            or tuple(target.shape) != entry.shape
            or target.numel() == 0
        ):
            return False
        self._fill(name, target)
        return True

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
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
        config = config_obj.to_dict()  # type: ignore[union-attr]
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
