"""`ParamScheduler`: set learning rate and momentum from the training progress each batch.

The value depends only on ``train_step / total_steps``, so a resumed run continues the
schedule exactly without any state of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nnblocks.train.callback import Callback
from nnblocks.train.schedules import OneCycle, OneCycleMomentum, Schedule, make_schedule

if TYPE_CHECKING:
    from nnblocks.train.learner import Learner

__all__ = ["ParamScheduler", "one_cycle_scheduler"]


class ParamScheduler(Callback):
    """Schedule the learning rate (a factor of each group's ``base_lr``) and momentum.

    Args:
        lr: a schedule (name, dict, Schedule or function of pct) giving the factor of the
            peak learning rate; ``None`` leaves the learning rate alone.
        mom: a schedule giving the momentum (Adam's beta1, SGD's momentum); ``None``: fixed.

    Example:
        >>> learn.fit(3, schedule=ParamScheduler(lr="cosine"))
    """

    order = 10

    def __init__(self, lr: Any = None, mom: Any = None):
        self.lr: Schedule | None = make_schedule(lr) if lr is not None else None
        self.mom: Schedule | None = make_schedule(mom) if mom is not None else None

    @property
    def schedules(self) -> dict[str, Any]:
        return {k: s.config() for k, s in (("lr", self.lr), ("mom", self.mom)) if s is not None}

    def state_dict(self) -> dict[str, Any]:
        return self.schedules  # recorded for reading; the position alone restores it

    def before_fit(self, learn: Learner) -> None:
        self._apply(learn)

    def before_batch(self, learn: Learner) -> None:
        if learn.training:
            self._apply(learn)

    def _apply(self, learn: Learner) -> None:
        pct = min(learn.train_step / max(1, learn.total_steps), 1.0)
        lr = self.lr(pct) if self.lr is not None else None
        mom = self.mom(pct) if self.mom is not None else None
        for g in learn.opt.param_groups:
            if lr is not None:
                g["lr"] = g["base_lr"] * lr
            if mom is not None:
                if "betas" in g:
                    g["betas"] = (mom, g["betas"][1])
                elif "momentum" in g:
                    g["momentum"] = mom


def one_cycle_scheduler(
    pct_start: float = 0.25,
    div: float = 25.0,
    final_div: float = 1e4,
    moms: tuple[float, float] | None = (0.95, 0.85),
) -> ParamScheduler:
    """The one-cycle policy: learning rate up then down, momentum down then up."""
    mom = OneCycleMomentum(pct_start, moms[0], moms[1]) if moms is not None else None
    return ParamScheduler(lr=OneCycle(pct_start, div, final_div), mom=mom)
