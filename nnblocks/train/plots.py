"""PNG plots of a run: loss curves after ``fit`` and the ``lr_find`` sweep.

Drawn with matplotlib's object API on an Agg canvas, so no global backend is switched and no
display is needed; files are written atomically.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from nnblocks.train.learner import Learner
    from nnblocks.train.lr_find import LRFindResult

__all__ = ["plot_loss_curves", "plot_lr_find"]


def _figure(width: float = 7.0, height: float = 4.0) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    from nnblocks.io.atomic import atomic_write_bytes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path


def plot_loss_curves(learn: Learner, path: str | os.PathLike[str]) -> Path:
    """Training loss per step (raw and smoothed) and validation loss per epoch, as a PNG.

    The loss axis is logarithmic when every loss drawn is positive and finite.
    """
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    losses = torch.cat(learn.loss_log).float() if learn.loss_log else torch.empty(0)
    steps = torch.arange(1, losses.numel() + 1)
    if losses.numel():
        ax.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.8, label="train (step)")
        k = max(1, losses.numel() // 50)
        if k > 1:
            smooth = torch.nn.functional.avg_pool1d(losses[None, None], k, stride=1)[0, 0]
            ax.plot(steps[k - 1 :], smooth, color="tab:blue", label=f"train (mean of {k})")
    per_epoch = losses.numel() / max(1, len(learn.history))
    valid = [(i, r["valid_loss"]) for i, r in enumerate(learn.history) if "valid_loss" in r]
    if valid:
        ax.plot(
            [(i + 1) * per_epoch for i, _ in valid],
            [v for _, v in valid],
            "o-",
            color="tab:orange",
            label="valid (epoch)",
        )
    ax.set_xlabel("step")
    # A log axis shows the late, small improvements a linear one flattens; it needs every
    # loss positive (a regression loss can be 0, a custom loss negative).
    shown = torch.cat([losses, torch.tensor([float(v) for _, v in valid])])
    if shown.numel() and bool((torch.isfinite(shown) & (shown > 0)).all()):
        ax.set_yscale("log")
        ax.set_ylabel("loss (log scale)")
    else:
        ax.set_ylabel("loss")
    ax.set_title("loss curves")
    ax.legend()
    return _save(fig, path)


def plot_lr_find(result: LRFindResult, path: str | os.PathLike[str]) -> Path:
    """The smoothed loss against the learning rate (log scale), with both suggestions."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(result.lrs, result.losses, color="tab:blue")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    for lr, name, color in (
        (result.steepest, "steepest", "tab:red"),
        (result.valley, "valley", "tab:green"),
    ):
        if lr is not None:
            ax.axvline(lr, color=color, linestyle="--", label=f"{name}: {lr:.2e}")
    ax.set_title("lr_find")
    ax.legend()
    return _save(fig, path)
