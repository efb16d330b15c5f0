"""`GradientClip`: clip the global gradient norm before each step (Pascanu et al. 2013)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from nnblocks.errors import TrainingError
from nnblocks.train.callback import Callback

if TYPE_CHECKING:
    from nnblocks.train.learner import Learner

__all__ = ["GradientClip"]


class GradientClip(Callback):
    """Scale gradients so their global L2 norm is at most ``max_norm``.

    Runs after mixed precision has unscaled fp16 gradients and after gradient accumulation
    decided to step, so it clips the true, complete gradient once per step.

    Args:
        max_norm: the largest allowed norm.
        norm_type: the norm (2.0 = L2).
    """

    order = 40

    def __init__(self, max_norm: float, norm_type: float = 2.0):
        if not max_norm > 0:
            raise TrainingError(f"GradientClip needs max_norm > 0. Received: {max_norm!r}")
        self.max_norm = max_norm
        self.norm_type = norm_type

    def before_fit(self, learn: Learner) -> None:
        self._params = [p for g in learn.opt.param_groups for p in g["params"]]

    def before_step(self, learn: Learner) -> None:
        if learn.scaler is not None:
            learn.scaler.unscale_(learn.opt)
        # foreach kernels and no .item(): the norm stays on the device.
        learn.grad_norm = torch.nn.utils.clip_grad_norm_(
            self._params, self.max_norm, self.norm_type, foreach=True
        )
