"""The fields of a training checkpoint's ``training.json``, checked before any is used.

A checkpoint is data from disk: a hand-edited, truncated-then-repaired or hostile file must
fail with a ``CheckpointError`` that names the field, what was expected and what was
found, not with a ``KeyError`` or ``TypeError`` halfway through restoring a Learner.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nnblocks.errors import CheckpointError

__all__ = ["validate_training_document"]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _count(minimum: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _is_int(v) and v >= minimum), f"an integer >= {minimum}"


def _list_of_dicts(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, dict) for x in v)


def _rng(v: Any) -> bool:
    return (
        _list_of_dicts(v)
        and len(v) >= 1
        and all(
            isinstance(s.get("torch"), str)
            and isinstance(s.get("numpy"), list)
            and isinstance(s.get("python"), list)
            for s in v
        )
    )


def _optimizer(v: Any) -> bool:
    return (
        isinstance(v, dict)
        and isinstance(v.get("class"), str)
        and isinstance(v.get("scalars"), dict)
        and _list_of_dicts(v.get("param_groups"))
        and all(isinstance(g.get("params"), list) for g in v["param_groups"])
    )


# field -> (check, what it must be)
_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "epoch": _count(0),
    "iter": _count(0),
    "train_step": _count(0),
    "n_epochs": _count(0),
    "n_iter": _count(0),
    "seed": (_is_int, "an integer"),
    "world_size": _count(1),
    "batch_size": _count(1),
    "optimizer": (
        _optimizer,
        "{'class': str, 'scalars': {...}, 'param_groups': [{'params': [...]}]}",
    ),
    "schedule": (_list_of_dicts, "a list of schedule states"),
    "scaler": (lambda v: v is None or isinstance(v, dict), "null or a gradient-scaler state"),
    "callbacks": (lambda v: isinstance(v, dict), "an object of callback states"),
    "history": (_list_of_dicts, "a list of per-epoch records"),
    "rng": (_rng, "a non-empty list of {'torch': str, 'numpy': [...], 'python': [...]}"),
}


def validate_training_document(doc: dict[str, Any], *, where: str) -> None:
    """Check every field of a ``training.json`` document (types, ranges, required keys).

    Args:
        doc: the parsed document.
        where: the file, for messages.

    Raises:
        CheckpointError: a required field is missing, or has the wrong type or range, or
            the position lies outside the run it records (naming the field).
    """
    for name, (check, expected) in _FIELDS.items():
        if name not in doc:
            raise CheckpointError(f"{where}: the required field `{name}` is missing.")
        if not check(doc[name]):
            raise CheckpointError(
                f"{where}: field `{name}` must be {expected}. Received: {doc[name]!r:.120}"
            )
    if doc["epoch"] > doc["n_epochs"]:
        raise CheckpointError(
            f"{where}: field `epoch` must be at most n_epochs={doc['n_epochs']}. "
            f"Received: epoch={doc['epoch']}"
        )
    if doc["iter"] > doc["n_iter"]:
        raise CheckpointError(
            f"{where}: field `iter` must be at most n_iter={doc['n_iter']}. "
            f"Received: iter={doc['iter']}"
        )
