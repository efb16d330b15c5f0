"""Fine-tuning in fastai's sense: train the new parameters first, then everything with
discriminative learning rates, a one-cycle schedule in both phases.

``fine_tune(learn, epochs)`` (``Learner.fine_tune``) does, like fastai's ``fine_tune``
(Howard & Gugger 2020; ULMFiT, Howard & Ruder 2018):

1. freeze everything but the *new* parameters and fit ``freeze_epochs`` with one cycle at
   ``base_lr`` (``pct_start=0.99``: the rate mostly warms up, so a random head does not
   wreck the body's features through large early steps on the norms left trainable);
2. unfreeze and fit ``epochs`` with one cycle over ``slice(base_lr / 2 / lr_mult,
   base_lr / 2)``: the earliest layer group gets the lowest rate, the new parameters the
   highest (``pct_start=0.3``, ``div=5``).

The new parameters are, in order of preference: the ``new=`` patterns; the modules that
surgery put in (``nnblocks.surgery.swap`` / ``beside`` remember them, see
``nnblocks.slots.inserted``); the model's ``head`` slot; its last child with parameters.
Layer groups for the rates are ``groups=`` (patterns, earliest first) then the new
parameters, or by default two: the body and the new parameters; a Learner built with its
own ``param_groups`` keeps them.

Norms with batch statistics in the frozen body follow ``train_bn`` (see
``nnblocks.freezing``). The default, ``"affine"``, is the policy
``benchmarks/bn_finetune.py`` supports (0.657 +- 0.023 against 0.642 for eval mode and
0.611 for statistics only; the figures are beside ``DEFAULT_TRAIN_BN``). The same run shows
that on a task far from the pretraining, training the body matters more than any norm
policy: full fine-tuning 0.952, ``fine_tune`` 0.844 (``lr_mult=10``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from torch import nn

from nnblocks.errors import TrainingError
from nnblocks.freezing import norm_policy
from nnblocks.registry import kind_of
from nnblocks.slots import find, inserted

if TYPE_CHECKING:
    from nnblocks.train.learner import Learner

__all__ = ["fine_tune", "new_parameters", "DEFAULT_TRAIN_BN"]

# benchmarks/bn_finetune.py (CNN pretrained on digits 0-4, head fitted on 10 examples per
# class of 5-9 with the body frozen, 3 seeds): accuracy 0.657 +- 0.023 with "affine",
# 0.642 +- 0.028 with "eval", 0.611 +- 0.025 with "stats" (full fine-tuning: 0.952).
DEFAULT_TRAIN_BN = "affine"


def new_parameters(model: nn.Module, new: Sequence[str] | None = None) -> list[str]:
    """Module paths of the parameters ``fine_tune`` trains first (see the module docstring).

    Raises:
        TrainingError: a ``new`` pattern that matches no module, or a model with no
            parameters outside the new ones (nothing to freeze).
    """
    if new is not None:
        paths: list[str] = []
        for pattern in [new] if isinstance(new, str) else list(new):
            hits = find(model, pattern) if isinstance(pattern, str) and pattern else []
            if not hits:
                raise TrainingError(
                    f"fine_tune: `new` pattern {pattern!r} matches no module of "
                    f"{type(model).__name__}. Expected a module path or glob, e.g. `head`."
                )
            paths.extend(p for p, _ in hits if p not in paths)
    else:
        paths = inserted(model) or _head_paths(model)
    names = [n for n, _ in model.named_parameters()]
    mine = [n for n in names if _under(n, paths)]
    if not mine or len(mine) == len(names):
        what = "no parameters" if not mine else "every parameter"
        raise TrainingError(
            f"fine_tune: the new parameters ({', '.join(paths) or 'none found'}) cover {what} "
            f"of {type(model).__name__}, so there is nothing to train first and freeze the "
            "rest. Pass new=[module patterns] naming the new part, or use fit()."
        )
    return paths


def _head_paths(model: nn.Module) -> list[str]:
    heads = [p for p, m in model.named_modules() if p == "head" or kind_of(m) == "head"]
    if heads:
        return heads[:1]
    with_params = [p for p, m in model.named_children() if any(True for _ in m.parameters())]
    return with_params[-1:]


def _under(name: str, paths: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in paths)


def _check(epochs: Any, freeze_epochs: Any, base_lr: Any, lr_mult: Any) -> None:
    for key, value, low in (("epochs", epochs, 1), ("freeze_epochs", freeze_epochs, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise TrainingError(
                f"Received an invalid value for `{key}` of fine_tune: expected an integer "
                f">= {low}. Received: {key}={value!r}"
            )
    for key, value in (("base_lr", base_lr), ("lr_mult", lr_mult)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise TrainingError(
                f"Received an invalid value for `{key}` of fine_tune: expected a positive "
                f"number. Received: {key}={value!r}"
            )


def _layer_groups(model: nn.Module, groups: Sequence[str] | None, new: list[str]) -> Any:
    """A ``param_groups`` function: the body (split by ``groups``), then the new parameters."""

    def split(m: nn.Module) -> list[list[nn.Parameter]]:
        named = [(n, p) for n, p in m.named_parameters() if not _under(n, new)]
        out: list[list[nn.Parameter]] = []
        taken: set[str] = set()
        for pattern in groups or ():
            paths = [path for path, _ in find(m, pattern)]
            if not paths:
                raise TrainingError(
                    f"fine_tune: layer group pattern {pattern!r} matches no module of "
                    f"{type(m).__name__}."
                )
            group = [p for n, p in named if n not in taken and _under(n, paths)]
            taken.update(n for n, _ in named if _under(n, paths))
            if group:
                out.append(group)
        rest = [p for n, p in named if n not in taken]
        return ([rest] if rest else []) + out if groups else [rest]

    return split


def fine_tune(
    learn: Learner,
    epochs: int,
    freeze_epochs: int = 1,
    base_lr: float | None = None,
    lr_mult: float = 10.0,
    *,
    new: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
    train_bn: bool | str = DEFAULT_TRAIN_BN,
) -> list[dict[str, Any]]:
    """Train the new parameters, then all of them with discriminative learning rates.

    Args:
        learn: the Learner (its model, data, optimizer settings and callbacks are used).
        epochs: epochs of the second, unfrozen phase.
        freeze_epochs: epochs with only the new parameters trainable (0: skip the phase).
        base_lr: the peak rate of the first phase; the second peaks at ``base_lr / 2``
            for the new parameters (default 2e-3, fastai's).
        lr_mult: the new parameters' rate over the earliest layer group's in phase two.
            fastai's 100 spreads over its ~3 layer groups, so its last body group trains
            at 1/10 of the head's rate; with the default two groups (body, new) 10 gives
            the body that rate (on bn_finetune's digits, 100 left the body nearly fixed:
            see ``DEFAULT_TRAIN_BN``'s figures).
        new: module patterns of the new parameters (default: what surgery inserted, else
            the head; see the module docstring).
        groups: module patterns splitting the body into layer groups, earliest first
            (the parameters they do not cover form the first group).
        train_bn: the policy for batch-statistics norms in the frozen body while phase one
            runs: ``"affine"``, ``"stats"`` or ``"eval"`` (``True``/``False`` as in ``freeze``).

    Returns:
        The history of both phases, each row with ``"phase"``: ``"frozen"`` or ``"unfrozen"``.

    Raises:
        TrainingError: bad numbers, patterns that match nothing, or nothing to freeze
            (every parameter is new) - all before any training step.

    Example:
        >>> learn = Learner(model, data)                          # doctest: +SKIP
        >>> learn.fine_tune(3, freeze_epochs=1, base_lr=2e-3)      # doctest: +SKIP
    """
    base_lr = 2e-3 if base_lr is None else base_lr
    _check(epochs, freeze_epochs, base_lr, lr_mult)
    policy = norm_policy(train_bn)
    paths = new_parameters(learn.model, new)
    if learn.param_groups is None or groups is not None:
        learn.param_groups = _layer_groups(learn.model, groups, paths)
        learn.opt = None  # type: ignore[assignment]  # rebuilt by the next fit, over these groups
    history: list[dict[str, Any]] = []
    if freeze_epochs:
        learn.freeze(train_bn=policy)
        learn.unfreeze(*paths)
        rows = learn.fit_one_cycle(freeze_epochs, slice(base_lr), pct_start=0.99)
        history.extend({**row, "phase": "frozen"} for row in rows)
    learn.unfreeze()
    half = base_lr / 2
    rows = learn.fit_one_cycle(epochs, slice(half / lr_mult, half), pct_start=0.3, div=5.0)
    history.extend({**row, "phase": "unfrozen"} for row in rows)
    return history
