"""Freeze and unfreeze parts of a model by slot name or glob pattern over module names.

BatchNorm layers inside a frozen part stay trainable by default (``train_bn=True``): their
running statistics and affine parameters were fitted to the pretraining data, and keeping
them frozen while the rest adapts is a known accuracy trap in fine-tuning (fastai's
``train_bn``; Howard & Gugger 2020).
"""

from __future__ import annotations

import fnmatch

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from nnblocks.errors import TrainingError

__all__ = ["freeze", "unfreeze", "match_modules"]

_FLAG = "_nnblocks_frozen_bn"


def match_modules(model: nn.Module, patterns: tuple[str, ...]) -> list[tuple[str, nn.Module]]:
    """Modules whose names match any pattern (a slot name, or a glob like ``encoder.*``).

    No patterns: the whole model.

    Raises:
        TrainingError: a pattern that matches no module (with example names).
    """
    if not patterns:
        return [("", model)]
    named = list(model.named_modules())
    out: list[tuple[str, nn.Module]] = []
    for pattern in patterns:
        hits = [(n, m) for n, m in named if n and fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            examples = ", ".join(n for n, _ in named[1:8])
            raise TrainingError(
                f"freeze/unfreeze: pattern `{pattern}` matches no module of "
                f"{type(model).__name__}. Module names look like: {examples}"
            )
        out.extend(h for h in hits if all(h[1] is not m for _, m in out))
    return out


def freeze(model: nn.Module, *patterns: str, train_bn: bool = True) -> list[str]:
    """Stop gradients for the parameters of the matching modules.

    Args:
        model: the model.
        *patterns: slot names (``"encoder"``) or globs over module names
            (``"encoder.layers.*.self_attention"``); none: the whole model.
        train_bn: keep BatchNorm layers in the frozen parts trainable (parameters and
            running statistics). With ``False`` they are frozen too and the Learner keeps
            them in eval mode while training.

    Returns:
        The names of the matched modules.

    Raises:
        TrainingError: a pattern that matches nothing.
    """
    matched = match_modules(model, patterns)
    for _, module in matched:
        for p in module.parameters():
            p.requires_grad_(False)
        for m in module.modules():
            if isinstance(m, _BatchNorm):
                if train_bn:
                    for p in m.parameters(recurse=False):
                        p.requires_grad_(True)
                    setattr(m, _FLAG, False)
                else:
                    setattr(m, _FLAG, True)
    return [n for n, _ in matched]


def unfreeze(model: nn.Module, *patterns: str) -> list[str]:
    """Make the matching modules (the whole model when none) trainable again.

    Returns:
        The names of the matched modules.
    """
    matched = match_modules(model, patterns)
    for _, module in matched:
        for p in module.parameters():
            p.requires_grad_(True)
        for m in module.modules():
            if getattr(m, _FLAG, False):
                setattr(m, _FLAG, False)
    return [n for n, _ in matched]
