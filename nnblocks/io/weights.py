"""The one weight loader: check a safetensors header against a model, then fill the model.

Both ``nnblocks.load`` and the training checkpoints load weights through here, so both get
the same checks and the same messages:

1. :func:`check_weights` compares the model's state dict (names, shapes, dtype families)
   with the file's header before a byte of tensor data is read. The model may live on the
   meta device, so a spec whose sizes disagree with the weights fails without allocating.
2. :func:`materialize` turns a model whose parameters are on the meta device into a real
   one whose parameters are the tensors read from the (memory-mapped) file: the model's
   memory is allocated once, and the random initialisation a normal build would do, and
   the second copy it would need, are never spent.
3. :func:`load_weights` copies the file into an existing, allocated model (resuming
   training, or a part that cannot be built on the meta device).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnblocks.errors import CheckpointError
from nnblocks.io.safetensors_io import describe_tensors, read_tensors

__all__ = [
    "check_weights",
    "load_weights",
    "materialize",
    "parameters_on_meta",
    "same_dtype",
    "unstored_bytes",
]

log = logging.getLogger(__name__)

_SHOWN = 8  # names listed in a message before "..."


def _family(dtype: torch.dtype) -> str:
    if dtype.is_floating_point:
        return "float"
    if dtype.is_complex:
        return "complex"
    return "bool" if dtype == torch.bool else "integer"


def _names(names: list[str]) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def check_weights(
    model: nn.Module, path: str | os.PathLike[str], *, strict: bool = True
) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Compare ``model``'s state dict with the header of the safetensors file ``path``.

    Nothing but the header is read, and the model may be on the meta device.

    Args:
        model: the model the weights are meant for.
        path: the safetensors file (validated strictly first).
        strict: names must match both ways (missing and left-over tensors fail).

    Returns:
        ``{name: (shape, dtype)}`` of the file, aliases (tied tensors) included.

    Raises:
        CheckpointError: the file is invalid; a tensor is missing or left over (``strict``);
            or a tensor's shape or dtype family differs (naming the tensor, the shape the
            model expects and the one found in the file).
    """
    path = Path(path)
    stored = describe_tensors(path)
    expected = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    where = f"`{path}` does not fit the model rebuilt from its spec"
    if strict:
        missing = [k for k in expected if k not in stored]
        unexpected = [k for k in stored if k not in expected]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing {_names(missing)}")
            if unexpected:
                parts.append(f"not in the model {_names(unexpected)}")
            raise CheckpointError(f"{where}: tensors {'; '.join(parts)}.")
    for name, (shape, dtype) in expected.items():
        if name not in stored:
            continue
        found_shape, found_dtype = stored[name]
        if found_shape != shape:
            raise CheckpointError(
                f"{where}: tensor `{name}` expected shape {list(shape)}, found "
                f"{list(found_shape)} in the file."
            )
        if _family(found_dtype) != _family(dtype):
            raise CheckpointError(
                f"{where}: tensor `{name}` expected a {_family(dtype)} dtype (the model "
                f"holds {dtype}), found {found_dtype} in the file."
            )
    return stored


def unstored_bytes(model: nn.Module) -> int:
    """Bytes of the tensors a build allocates that no weights file holds (buffers such as
    rotary tables that are recomputed, not saved). Works on the meta device."""
    saved = {id(t) for t in model.state_dict(keep_vars=True).values()}
    return sum(
        t.numel() * t.element_size()
        for t in {id(t): t for t in model.buffers()}.values()
        if id(t) not in saved
    )


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Build modules with their parameters on the meta device and their buffers real.

    Every parameter a module registers while this is active is moved to the meta device
    (the idea of accelerate's ``init_empty_weights``): initialising weights that are about
    to be overwritten costs time and a second copy of the model's memory, while buffers
    computed in ``__init__`` (and never saved, e.g. rotary tables) keep their values.

    Not thread-safe: it patches ``nn.Module.register_parameter`` for its duration.
    """
    original = nn.Module.register_parameter

    def register(self: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(self, name, param)
        if param is not None and not param.is_meta:
            self._parameters[name] = nn.Parameter(
                param.detach().to("meta"), requires_grad=param.requires_grad
            )

    nn.Module.register_parameter = register  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    module_path, _, attr = name.rpartition(".")
    return (model.get_submodule(module_path) if module_path else model), attr


def materialize(
    model: nn.Module, tensors: Mapping[str, torch.Tensor], *, strict: bool = True
) -> bool:
    """Make ``model``'s meta parameters and its saved buffers the tensors of ``tensors``.

    Parameters keep their ``requires_grad`` and their sharing: names that were one
    Parameter before (tied weights) are one Parameter after. A tensor is never shared by
    two parameters that were not tied (it is copied for the second one). Each tensor keeps
    the dtype it was saved in.

    Args:
        model: a model built under :func:`parameters_on_meta` and checked by
            :func:`check_weights`.
        tensors: the file's state dict (from ``read_tensors``).
        strict: names were checked to match both ways.

    Returns:
        True when no tensor is left on the meta device; False otherwise (a parameter the
        file does not hold, or a buffer derived from a parameter in ``__init__``): the
        caller then builds the model normally and uses :func:`load_weights`.
    """
    new: dict[int, nn.Parameter] = {}
    used: set[int] = set()
    for name, param in model.named_parameters(remove_duplicate=False):
        if name not in tensors:
            continue
        if id(param) not in new:
            value = tensors[name]
            if id(value) in used:  # stored once, but the rebuilt model does not tie them
                value = value.clone()
            used.add(id(value))
            new[id(param)] = nn.Parameter(value, requires_grad=param.requires_grad)
        module, attr = _owner(model, name)
        module._parameters[attr] = new[id(param)]
    saved = model.state_dict(keep_vars=True)
    for name, buffer in list(saved.items()):
        if name in tensors and not isinstance(buffer, nn.Parameter):
            module, attr = _owner(model, name)
            module._buffers[attr] = tensors[name]
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:
        log.debug("materialize: still on the meta device: %s", leftover[:_SHOWN])
    return not leftover


def load_weights(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    strict: bool = True,
    device: str | torch.device | None = None,
) -> nn.Module:
    """Check, then copy the safetensors file ``path`` into the allocated ``model``.

    Args:
        model: an allocated model (on any device).
        path: the safetensors file.
        strict: every name must match both ways; with False, what fits is loaded and the
            rest is logged.
        device: where to read the tensors (default: the model's first parameter's).

    Returns:
        ``model``.

    Raises:
        CheckpointError: as :func:`check_weights`, or the file cannot be read.
    """
    check_weights(model, path, strict=strict)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    tensors = read_tensors(path, device=str(device))
    try:
        result = model.load_state_dict(tensors, strict=strict)
    except RuntimeError as exc:  # checked above; kept for parts with custom loading hooks
        raise CheckpointError(f"`{path}` does not fit the model: {exc}") from exc
    if result.missing_keys or result.unexpected_keys:
        log.warning(
            "loading %s with strict=False: missing %s, unexpected %s",
            path,
            result.missing_keys,
            result.unexpected_keys,
        )
    return model


def same_dtype(model: nn.Module, stored: Mapping[str, tuple[Any, torch.dtype]]) -> None:
    """Cast ``model`` to the file's floating dtype when the file holds only one.

    A model saved in half precision comes back in half precision: ``load_state_dict``
    alone would silently cast the weights to the freshly built model's float32.
    """
    saved = {dtype for _, dtype in stored.values() if dtype.is_floating_point}
    built = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if len(saved) == 1 and saved != built:
        model.to(saved.pop())
