"""Turning the Learner's arguments into parts: data splits and the loss function."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from nnblocks.errors import DataError, TrainingError

__all__ = ["LOSSES", "split_data", "resolve_loss"]


def _flat_cross_entropy(output: torch.Tensor, target: torch.Tensor, **kw: Any) -> torch.Tensor:
    if output.dim() > 2 and target.dim() == output.dim() - 1:  # [B, T, C] with [B, T]
        return F.cross_entropy(output.flatten(0, -2), target.flatten(), **kw)
    return F.cross_entropy(output, target, **kw)


def _cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return _flat_cross_entropy(output, target)


def _bce(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(output, target.to(output.dtype))


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "cross_entropy": _cross_entropy,
    "bce_with_logits": _bce,
    "mse": F.mse_loss,
    "l1": F.l1_loss,
    "smooth_l1": F.smooth_l1_loss,
    "huber": F.huber_loss,
    "nll": F.nll_loss,
}


def split_data(data: Any) -> tuple[dict[str, Any], Any]:
    """``({"train": ..., "valid": ..., "test": ...}, task or None)`` from any accepted form."""
    if hasattr(data, "train") and not isinstance(data, (tuple, list, Mapping)):
        splits = {k: getattr(data, k, None) for k in ("train", "valid", "test")}
        return splits, getattr(data, "task", None)
    if isinstance(data, Mapping):
        unknown = set(data) - {"train", "valid", "test"}
        if unknown or "train" not in data:
            raise DataError(
                "Received invalid data: a dict needs a `train` key and may have `valid` and "
                f"`test`. Received keys: {sorted(data)}"
            )
        return {k: data.get(k) for k in ("train", "valid", "test")}, None
    if (
        isinstance(data, (tuple, list))
        and 1 <= len(data) <= 3
        and not isinstance(data[0], torch.Tensor)
    ):
        padded = list(data) + [None] * (3 - len(data))
        return dict(zip(("train", "valid", "test"), padded)), None
    if hasattr(data, "tensors") or hasattr(data, "__getitem__"):
        return {"train": data, "valid": None, "test": None}, None
    raise DataError(
        "Received invalid data: expected a DataBundle (with .train/.valid/.test/.task), a "
        f"(train, valid) tuple or a dict with train/valid/test. Received: {type(data).__name__}"
    )


def resolve_loss(loss: Any, task: Any) -> Callable[..., torch.Tensor]:
    if loss is None:
        loss = getattr(task, "loss", None)
        if loss is None:
            raise TrainingError(
                "no loss: pass loss= (a name like 'cross_entropy', a function or an nn.Module) "
                "or data whose task defines one."
            )
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise TrainingError(f"Received an unknown loss `{loss}`. Known: {', '.join(LOSSES)}")
        return LOSSES[loss]
    if not callable(loss):
        raise TrainingError(
            f"Received an invalid loss: expected a callable. Received: {loss!r:.80}"
        )
    return loss
