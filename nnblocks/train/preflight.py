"""Checks run once before the first step: do the data and the model agree?

A wrong number of classes, a wrong input width or a wrong target dtype would otherwise
surface as an index error deep inside a kernel, or worse, as silent garbage. One forward
pass on the first training batch (in eval mode, without gradients, leaving every RNG as it
was) turns them into a ``DataError`` that says which side expects what.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from nnblocks.errors import DataError, NNBlocksError, TrainingError

__all__ = ["check_first_batch", "audit_first_batch", "describe"]

log = logging.getLogger(__name__)


def describe(batch: Any, start: int = 0) -> str:
    """``"x0 [64, 32] float32, x1 [64] int64"``: shapes and dtypes of a batch's tensors."""
    out = []
    for i, t in enumerate(batch, start):
        if isinstance(t, torch.Tensor):
            out.append(f"#{i} {list(t.shape)} {str(t.dtype).replace('torch.', '')}")
        else:
            out.append(f"#{i} {type(t).__name__}")
    return ", ".join(out) or "(nothing)"


def _first_layer_hint(model: nn.Module, inputs: tuple[Any, ...]) -> str:
    x = inputs[0] if inputs else None
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() == 0:
        return ""
    for name, m in model.named_modules():
        width = getattr(m, "in_features", None) or getattr(m, "in_channels", None)
        if isinstance(width, int):
            axis = -1 if hasattr(m, "in_features") else 1
            have = x.shape[axis] if x.dim() > 1 or axis == -1 else None
            if have is not None and have != width:
                kind = "features" if axis == -1 else "channels"
                return (
                    f" The model's first layer `{name}` ({type(m).__name__}) expects {width} "
                    f"input {kind}; the data has {have}."
                )
            return ""
    return ""


def _class_hint(out: torch.Tensor, targets: tuple[Any, ...], full_targets: Any) -> str | None:
    """A message when integer targets name classes the model does not output."""
    if not targets or not isinstance(out, torch.Tensor) or not out.is_floating_point():
        return None
    y = targets[0]
    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.dtype == torch.bool:
        return None
    if out.dim() != y.dim() + 1 or out.shape[:-1] != y.shape:
        return None
    classes = out.shape[-1]
    whole = full_targets if isinstance(full_targets, torch.Tensor) else y
    top = int(whole.max()) if whole.numel() else -1
    if top >= classes:
        return (
            f"the model outputs {classes} classes (output {list(out.shape)}), but the "
            f"training targets hold class id {top}, so the data has at least {top + 1} "
            f"classes. Build the model with {top + 1} outputs (num_classes={top + 1}) or "
            "check the labels."
        )
    return None


def check_first_batch(
    model: nn.Module,
    loss_func: Any,
    batch: tuple[Any, ...],
    n_inputs: int,
    *,
    full_targets: Any = None,
    autocast: Any = None,
) -> None:
    """Run the model and the loss once on ``batch``; explain a disagreement.

    Args:
        model: the model (put back in its previous train/eval mode afterwards).
        loss_func: ``loss(output, *targets)``.
        batch: the first training batch.
        n_inputs: how many leading tensors go to the model.
        full_targets: the whole first target column when cheap to have (to catch a class id
            that is not in the first batch).
        autocast: the context the loop runs the forward pass in.

    Raises:
        DataError: the model cannot run on the inputs, integer targets exceed the model's
            classes, or the loss cannot compare the output with the targets.
        TrainingError: the loss does not return a scalar.
    """
    import contextlib

    inputs, targets = batch[:n_inputs], batch[n_inputs:]
    was_training = model.training
    model.eval()  # no dropout, no BatchNorm statistics update: the check changes nothing
    try:
        with (
            torch.random.fork_rng(devices=[]),
            torch.no_grad(),
            autocast or contextlib.nullcontext(),
        ):
            try:
                out = model(*inputs)
            except Exception as exc:
                raise DataError(
                    f"the model could not run on the first training batch. Model inputs: "
                    f"{describe(inputs)}.{_first_layer_hint(model, inputs)} The model "
                    f"raised {type(exc).__name__}: {exc}"
                ) from exc
            hint = _class_hint(out, targets, full_targets)
            if hint:
                raise DataError(hint)
            try:
                loss = loss_func(out, *targets)
            except Exception as exc:
                out_desc = describe((out,)) if isinstance(out, torch.Tensor) else type(out).__name__
                raise DataError(
                    f"the loss `{getattr(loss_func, '__name__', type(loss_func).__name__)}` could "
                    f"not compare the model output {out_desc} with the targets "
                    f"{describe(targets, n_inputs)}{_dtype_hint(out, targets)}. The loss raised "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
                shape = list(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
                raise TrainingError(
                    f"the loss must return a scalar tensor (reduce it with mean). Received: {shape}"
                )
    finally:
        model.train(was_training)


def _dtype_hint(out: Any, targets: tuple[Any, ...]) -> str:
    if not targets or not isinstance(out, torch.Tensor) or not isinstance(targets[0], torch.Tensor):
        return ""
    y = targets[0]
    if out.dim() == y.dim() + 1 and y.is_floating_point():
        return (
            f" (the output has a class axis of {out.shape[-1]}, so the loss expects integer "
            f"class ids (int64), but the targets are {str(y.dtype).replace('torch.', '')})"
        )
    if out.shape == y.shape and not y.is_floating_point() and out.is_floating_point():
        return " (a regression/binary loss expects float targets)"
    return ""


def audit_first_batch(model: nn.Module, inputs: tuple[Any, ...], mode: str) -> None:
    """Run ``nnblocks.check.audit_reuse`` on the first batch; warn or raise on failures.

    Skipped silently when the check package is not available.

    Raises:
        TrainingError: ``mode="error"`` and the audit found undeclared module reuse.
    """
    if mode == "off":
        return
    try:
        from nnblocks.check import audit_reuse  # type: ignore[attr-defined]
    except ImportError:
        return
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=[]):
            report = audit_reuse(model, *inputs)
    except NNBlocksError:
        raise
    except Exception as exc:  # the audit is advice: never let it break training
        log.warning("reuse audit could not run: %s", exc)
        return
    finally:
        model.train(was_training)
    if getattr(report, "ok", True):
        return
    message = f"reuse audit of the model found problems:\n{report}"
    if mode == "error":
        raise TrainingError(message)
    log.warning(message)
