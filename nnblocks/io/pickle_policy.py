"""The pickle policy: refuse by default, restricted unpickler when trusted, never a full one.

Unpickling runs code chosen by whoever wrote the file (``__reduce__``), so a ``.pt``,
``.pth``, ``.bin``, ``.pkl`` or ``.ckpt`` file from the internet is a program, not data.

- Without ``trust_pickle=True`` such files are refused with an explanation; nothing in
  them is read.
- With ``trust_pickle=True`` they are read with ``torch.load(weights_only=True)``, the
  restricted unpickler that only rebuilds tensors and plain containers. If it refuses the
  file (it holds arbitrary objects, e.g. a whole pickled module), nnblocks refuses too:
  there is no fallback to an unrestricted load. Convert such a file yourself, in an
  environment you trust, and save it with ``nnblocks.save``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from nnblocks.errors import CheckpointError

__all__ = ["PICKLE_SUFFIXES", "is_pickle_path", "pickle_refusal", "read_pickle_weights"]

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")
_NESTED_KEYS = ("state_dict", "model_state_dict", "model")


def is_pickle_path(path: str | os.PathLike[str]) -> bool:
    """True for the file suffixes that hold pickles (``.pt``, ``.pth``, ``.bin``, ...)."""
    return Path(path).suffix.lower() in PICKLE_SUFFIXES


def pickle_refusal(path: str | os.PathLike[str]) -> CheckpointError:
    """The error that explains why a pickle-format file is not loaded."""
    return CheckpointError(
        f"refusing to load `{path}`: it is a pickle-format file, and unpickling runs "
        "whatever code its author put in it. nnblocks checkpoints are safetensors + JSON "
        "(see nnblocks.save). If you trust this file, pass trust_pickle=True: it is then "
        "read with torch.load(weights_only=True), which only rebuilds tensors, and is "
        "refused if it holds anything else (never a full unpickle)."
    )


def _state_dict(path: Path, obj: Any) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in _NESTED_KEYS:  # training scripts often wrap the weights
            if isinstance(obj.get(key), Mapping):
                return _state_dict(path, obj[key])
    if isinstance(obj, Mapping) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        return dict(obj)
    shown = sorted(map(str, obj))[:10] if isinstance(obj, Mapping) else type(obj).__name__
    raise CheckpointError(
        f"`{path}`: expected a state dict (names -> tensors, possibly under one of "
        f"{list(_NESTED_KEYS)}). Received: {shown}"
    )


def read_pickle_weights(
    path: str | os.PathLike[str],
    *,
    trust_pickle: bool = False,
    map_location: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """Read a state dict from a pickle-format file, under the policy above.

    Args:
        path: a ``.pt``/``.pth``/``.bin``/``.pkl``/``.ckpt`` file.
        trust_pickle: must be True, or the file is refused unread.
        map_location: where the tensors go.

    Returns:
        The state dict.

    Raises:
        CheckpointError: ``trust_pickle`` is False; the file is missing; the restricted
            unpickler refuses it; or it holds no state dict.

    Example:
        >>> sd = read_pickle_weights("old.pt", trust_pickle=True)   # doctest: +SKIP
        >>> model.load_state_dict(sd); nnblocks.save(model, "converted")
    """
    path = Path(path)
    if not trust_pickle:
        raise pickle_refusal(path)
    if not path.is_file():
        raise CheckpointError(f"`{path}` is missing: expected a weights file.")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError, ... all mean "refused"
        raise CheckpointError(
            f"`{path}` was refused by the restricted unpickler "
            f"(torch.load(weights_only=True)): {str(exc).splitlines()[0] if str(exc) else exc!r}. "
            "nnblocks never falls back to a full unpickle; if you trust the file, convert it "
            "yourself and save it with nnblocks.save."
        ) from exc
    return _state_dict(path, obj)
