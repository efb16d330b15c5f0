"""Activation checkpointing by slot pattern: recompute activations in backward, keep less.

``checkpoint_activations(model, "decoder.layers.*")`` makes each matching module run its
forward under ``torch.utils.checkpoint`` (non-reentrant: works with keyword arguments,
``torch.compile`` and parameters without gradient; Chen et al. 2016, "Training Deep Nets
with Sublinear Memory Cost"). The module's activations inside are freed after the forward
pass and recomputed during backward, with the RNG state of the forward restored, so
dropout masks, losses and gradients are the same as without checkpointing.

Only training forwards with gradients are checkpointed; evaluation runs the module as is.
The module is not wrapped (its parameter names, state dict and slot stay the same): its
``forward`` is shadowed on the instance.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from nnblocks.errors import TrainingError
from nnblocks.freezing import match_modules

__all__ = ["checkpoint_activations", "remove_activation_checkpointing"]

_ORIGINAL = "_nnblocks_forward_before_checkpointing"


def _checkpointed(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
    forward = getattr(module, _ORIGINAL)
    if module.training and torch.is_grad_enabled():
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)


def checkpoint_activations(model: nn.Module, patterns: str | Sequence[str] | None) -> list[str]:
    """Checkpoint the activations of the modules matching ``patterns`` (globs over names).

    A module inside another matching module is left alone (checkpointing the outer one
    already frees everything inside it).

    Args:
        model: the model.
        patterns: a glob (``"decoder.layers.*"``), a list of them, or ``None`` (nothing).

    Returns:
        The names of the checkpointed modules.

    Raises:
        TrainingError: a pattern that matches no module, or a bad ``patterns`` value.
    """
    if patterns is None:
        return []
    if isinstance(patterns, str):
        patterns = [patterns]
    if not all(isinstance(p, str) for p in patterns):
        raise TrainingError(
            "checkpoint_activations must be a glob over module names or a list of them, e.g. "
            f"'decoder.layers.*'. Received: {patterns!r}"
        )
    hits = match_modules(model, tuple(patterns))
    names = sorted(n for n, _ in hits)
    outer = [(n, m) for n, m in hits if not any(n.startswith(f"{o}.") for o in names if o != n)]
    for _, module in outer:
        if _ORIGINAL not in module.__dict__:
            setattr(module, _ORIGINAL, module.forward)
            module.forward = functools.partial(_checkpointed, module)  # type: ignore[method-assign]
    return [n for n, _ in outer]


def remove_activation_checkpointing(model: nn.Module) -> None:
    """Undo ``checkpoint_activations`` on every module of ``model``."""
    for module in model.modules():
        if _ORIGINAL in module.__dict__:
            del module.__dict__["forward"]
            delattr(module, _ORIGINAL)
