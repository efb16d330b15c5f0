"""`lr_find`: sweep the learning rate exponentially and suggest one (Smith 2017, "Cyclical
Learning Rates for Training Neural Networks", section 3.3).

The loss is smoothed with a bias-corrected exponential moving average; the sweep stops
when the smoothed loss exceeds ``diverge`` times its minimum. Two suggestions:

- ``steepest``: where the smoothed loss falls fastest against log(lr);
- ``valley``: the middle of the longest stretch over which the smoothed loss keeps falling,
  which is more robust to a noisy curve than the steepest point.

The model, optimizer, gradients and every RNG are restored afterwards: ``lr_find`` changes
nothing but what it returns (and the plot it writes).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from nnblocks.errors import TrainingError
from nnblocks.train.distributed import all_reduce_sum
from nnblocks.train.loaders import make_loader
from nnblocks.train.rng import rng_state, set_rng_state

if TYPE_CHECKING:
    from nnblocks.train.learner import Learner

__all__ = ["LRFindResult", "lr_find", "suggest_steepest", "suggest_valley"]


@dataclasses.dataclass
class LRFindResult:
    """The sweep: learning rates, smoothed and raw losses, suggestions, and the plot's path."""

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    steepest: float | None
    valley: float | None
    plot_path: Path | None = None

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Save the curve with both suggestions as a PNG."""
        from nnblocks.train.plots import plot_lr_find

        self.plot_path = plot_lr_find(self, path)
        return self.plot_path

    def __repr__(self) -> str:
        fmt = lambda v: "none" if v is None else f"{v:.2e}"  # noqa: E731
        return f"LRFindResult(steepest={fmt(self.steepest)}, valley={fmt(self.valley)}, points={len(self.lrs)})"


def suggest_steepest(
    lrs: list[float], losses: list[float], skip_start: int = 10, skip_end: int = 5
) -> float | None:
    """The learning rate where the loss falls fastest against log(lr).

    The first points are skipped (the moving average is still warming up there) and so are
    the last (the loss is diverging).
    """
    lo, hi = min(skip_start, len(losses) // 4), len(losses) - skip_end
    if hi - lo < 3:
        return None
    grads = np.gradient(np.asarray(losses[lo:hi]), np.log(np.asarray(lrs[lo:hi])))
    return float(lrs[lo + int(np.argmin(grads))])


def suggest_valley(lrs: list[float], losses: list[float]) -> float | None:
    """The middle of the longest decreasing run (not necessarily contiguous) of the loss."""
    n = len(losses)
    if n < 3:
        return None
    length = [1] * n
    prev = [-1] * n
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and length[j] + 1 > length[i]:
                length[i], prev[i] = length[j] + 1, j
    end = int(np.argmax(length))
    start = end
    while prev[start] != -1:
        start = prev[start]
    return float(lrs[start + (end - start) // 2])


def lr_find(
    learn: Learner,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_it: int = 100,
    *,
    beta: float = 0.98,
    diverge: float = 4.0,
    plot: bool | str | os.PathLike[str] = True,
) -> LRFindResult:
    """Train ``num_it`` batches with the learning rate growing from ``start_lr`` to ``end_lr``.

    Args:
        learn: the Learner (its model, optimizer, loss and training data are used;
            discriminative learning-rate ratios between groups are kept).
        start_lr, end_lr: the sweep's range.
        num_it: batches in the sweep (the data is cycled if it has fewer).
        beta: smoothing of the loss.
        diverge: stop when the smoothed loss exceeds this multiple of its minimum.
        plot: ``True`` saves ``lr_find.png`` in the Learner's ``path`` (if it has one); a
            path saves there; ``False`` draws nothing.

    Returns:
        An ``LRFindResult`` with ``steepest`` and ``valley`` suggestions.

    Raises:
        TrainingError: a bad range, or not even two finite losses.

    Example:
        >>> result = learn.lr_find()
        >>> learn.fit_one_cycle(5, result.valley)
    """
    if not 0 < start_lr < end_lr or num_it < 2:
        raise TrainingError(
            f"lr_find needs 0 < start_lr < end_lr and num_it >= 2. Received: start_lr={start_lr}, "
            f"end_lr={end_lr}, num_it={num_it}"
        )
    opt = learn._ensure_optimizer()
    saved_model = {k: v.detach().clone() for k, v in learn.model.state_dict().items()}
    saved_opt = copy.deepcopy(opt.state_dict())
    saved_groups = [dict(g) for g in opt.param_groups]
    saved_rng = rng_state()
    was_training = learn.model.training
    try:
        lrs, raw, smooth = _sweep(learn, opt, start_lr, end_lr, num_it, beta, diverge)
    finally:
        learn.model.load_state_dict(saved_model)
        opt.load_state_dict(saved_opt)
        for g, old in zip(opt.param_groups, saved_groups):
            g.update({k: v for k, v in old.items() if k != "params"})
        opt.zero_grad(set_to_none=True)
        set_rng_state(saved_rng)
        learn.model.train(was_training)
    if len(smooth) < 2:
        raise TrainingError(
            f"lr_find got {len(smooth)} finite loss(es) before the loss diverged; lower start_lr."
        )
    result = LRFindResult(
        lrs, smooth, raw, suggest_steepest(lrs, smooth), suggest_valley(lrs, smooth)
    )
    target = None
    if plot is True and learn.path is not None:
        target = learn.path / "lr_find.png"
    elif plot not in (True, False, None):
        target = Path(plot)  # type: ignore[arg-type]
    if target is not None and learn.dist.rank == 0:
        result.plot(target)
    return result


def _sweep(
    learn: Learner,
    opt: torch.optim.Optimizer,
    start_lr: float,
    end_lr: float,
    num_it: int,
    beta: float,
    diverge: float,
) -> tuple[list[float], list[float], list[float]]:
    loader = make_loader(
        learn.splits["train"],
        learn.batch_size,
        shuffle=True,
        seed=0,
        rank=learn.dist.rank,
        world_size=learn.dist.world_size,
        device=learn.device,
        num_workers=learn.num_workers,
    )
    top = max(g.get("base_lr", g["lr"]) for g in opt.param_groups)
    ratios = [g.get("base_lr", g["lr"]) / top for g in opt.param_groups]
    n = learn.n_inputs
    lrs: list[float] = []
    raw: list[float] = []
    smooth: list[float] = []
    avg, best = 0.0, math.inf
    learn.train_model.train()
    epoch = 0
    while len(lrs) < num_it:
        loader.set_epoch(epoch)
        epoch += 1
        for batch in loader:
            it = len(lrs)
            if it >= num_it:
                break
            lr = start_lr * (end_lr / start_lr) ** (it / (num_it - 1))
            for g, r in zip(opt.param_groups, ratios):
                g["lr"] = lr * r
            with learn.autocast:
                out = learn.train_model(*batch[:n])
                loss = learn.loss_func(out, *batch[n:])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            # The same value on every process, so all of them stop at the same step.
            value = float(all_reduce_sum(loss.detach().float())) / learn.dist.world_size
            if not math.isfinite(value):
                return lrs, raw, smooth
            avg = beta * avg + (1 - beta) * value
            smoothed = avg / (1 - beta ** (it + 1))
            lrs.append(lr)
            raw.append(value)
            smooth.append(smoothed)
            best = min(best, smoothed)
            if smoothed > diverge * best:
                return lrs, raw, smooth
    return lrs, raw, smooth
