"""Freeze and unfreeze parts of a model by slot name or glob, with a policy for batch norms.

A frozen part's parameters get no gradient. Norms that keep running statistics (BatchNorm,
nnblocks' ``norm/batch``, any part with ``track_running_stats`` or ``running_*`` buffers)
need a policy of their own, because their statistics were fitted to the pretraining data
and keep moving in train mode even when no gradient reaches them:

- ``"affine"`` (``train_bn=True``, fastai's default): the norm's affine parameters stay
  trainable and its running statistics keep updating.
- ``"stats"``: the affine parameters freeze with the part, the running statistics update.
- ``"eval"`` (``train_bn=False``): everything freezes and the Learner keeps the norm in eval
  mode while training, so the statistics stay as they were.

Norms are recognised by what they have, not by class, so a new norm part with running
statistics is covered without a list to update. ``benchmarks/bn_finetune.py`` compares the
policies (and full fine-tuning); ``Learner.fine_tune`` uses the one the figures support.

This module sits low (slots, errors, torch) so that ``nnblocks.surgery`` can re-export it
without importing the training package; ``nnblocks.train.freeze`` is the same functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from torch import nn

from nnblocks.errors import TrainingError
from nnblocks.slots import close_slots, find

__all__ = [
    "NORM_POLICIES",
    "freeze",
    "unfreeze",
    "match_modules",
    "has_batch_stats",
    "norm_policy",
    "frozen_norms",
    "group_by_patterns",
]

NORM_POLICIES = ("affine", "stats", "eval")
# Set on a norm frozen with the "eval" policy; the Learner keeps those in eval mode.
FROZEN_FLAG = "_nnblocks_frozen_bn"

_Item = TypeVar("_Item")


def has_batch_stats(module: nn.Module) -> bool:
    """Whether ``module`` normalises with batch statistics (BatchNorm-like), by its attributes.

    True for a module with a ``track_running_stats`` attribute (torch's BatchNorm and
    InstanceNorm, nnblocks' ``norm/batch``) or with its own ``running_*`` buffers.
    """
    if isinstance(getattr(module, "track_running_stats", None), bool):
        return True
    return any(name.startswith("running_") for name, _ in module.named_buffers(recurse=False))


def norm_policy(train_bn: bool | str) -> str:
    """``train_bn`` as one of ``NORM_POLICIES`` (True: "affine", False: "eval").

    Raises:
        TrainingError: any other value.
    """
    if train_bn is True:
        return "affine"
    if train_bn is False:
        return "eval"
    if isinstance(train_bn, str) and train_bn in NORM_POLICIES:
        return train_bn
    raise TrainingError(
        "Received an invalid value for `train_bn`: expected True, False or one of "
        f"{', '.join(NORM_POLICIES)}. Received: train_bn={train_bn!r}"
    )


def match_modules(model: nn.Module, patterns: tuple[str, ...]) -> list[tuple[str, nn.Module]]:
    """Modules whose names match any pattern (a slot name, or a glob like ``encoder.*``).

    No patterns: the whole model. Each module once, in the order found.

    Raises:
        TrainingError: a pattern that matches no module (with close module names).
    """
    if not patterns:
        return [("", model)]
    out: list[tuple[str, nn.Module]] = []
    for pattern in patterns:
        hits = find(model, pattern) if isinstance(pattern, str) and pattern else []
        if not hits:
            raise TrainingError(
                f"freeze/unfreeze: pattern `{pattern}` matches no module of "
                f"{type(model).__name__}. Expected a module path or a glob. Close: "
                f"{', '.join(close_slots(model, str(pattern)))}"
            )
        out.extend(h for h in hits if all(h[1] is not m for _, m in out))
    return out


def freeze(model: nn.Module, *patterns: str, train_bn: bool | str = True) -> list[str]:
    """Stop gradients for the parameters of the matching modules.

    Args:
        model: the model.
        *patterns: slot names (``"encoder"``) or globs over module names
            (``"encoder.layers.*.self_attention"``); none: the whole model.
        train_bn: the policy for norms with batch statistics inside the frozen parts:
            ``True`` / ``"affine"`` (affine trainable, statistics update), ``"stats"``
            (statistics update only), ``False`` / ``"eval"`` (frozen, kept in eval mode
            by the Learner). See the module docstring.

    Returns:
        The names of the matched modules.

    Raises:
        TrainingError: a pattern that matches nothing, or an unknown ``train_bn``.
    """
    policy = norm_policy(train_bn)
    matched = match_modules(model, patterns)
    for _, module in matched:
        for p in module.parameters():
            p.requires_grad_(False)
        for m in module.modules():
            if not has_batch_stats(m):
                continue
            if policy == "affine":
                for p in m.parameters(recurse=False):
                    p.requires_grad_(True)
            setattr(m, FROZEN_FLAG, policy == "eval")
    return [n for n, _ in matched]


def unfreeze(model: nn.Module, *patterns: str) -> list[str]:
    """Make the matching modules (the whole model when none) trainable again.

    Returns:
        The names of the matched modules.

    Raises:
        TrainingError: a pattern that matches nothing.
    """
    matched = match_modules(model, patterns)
    for _, module in matched:
        for p in module.parameters():
            p.requires_grad_(True)
        for m in module.modules():
            if getattr(m, FROZEN_FLAG, False):
                setattr(m, FROZEN_FLAG, False)
    return [n for n, _ in matched]


def frozen_norms(model: nn.Module) -> list[nn.Module]:
    """The norms frozen with the ``"eval"`` policy (the Learner keeps them in eval mode)."""
    return [m for m in model.modules() if getattr(m, FROZEN_FLAG, False)]


def group_by_patterns(
    named: list[tuple[str, nn.Parameter]],
    items: Sequence[_Item],
    matches: Callable[[str, _Item], bool],
) -> list[list[tuple[str, nn.Parameter]]]:
    """Split named parameters into one group per item, in order, plus a group of the rest.

    Each parameter goes to the first item that ``matches`` its name; the last group holds
    what no item matched (left out when empty).

    Args:
        named: ``(name, parameter)`` pairs, as ``model.named_parameters()`` gives them.
        items: patterns (or lists of patterns), one group each.
        matches: ``matches(name, item)``: whether ``item`` takes the parameter ``name``.

    Returns:
        Non-empty groups of ``(name, parameter)``, each parameter in exactly one.

    Raises:
        TrainingError: an item matches no parameter an earlier item left.
    """
    taken: set[str] = set()
    out = []
    for item in items:
        group = [(n, p) for n, p in named if n not in taken and matches(n, item)]
        if not group:
            raise TrainingError(
                f"param_groups: pattern {item!r} matches no parameter of the model. "
                f"Parameter names look like: {', '.join(n for n, _ in named[:5])}"
            )
        taken.update(n for n, _ in group)
        out.append(group)
    rest = [(n, p) for n, p in named if n not in taken]
    if rest:
        out.append(rest)
    return out
