"""`MixedPrecision`: bf16 autocast (CPU and CUDA) or fp16 autocast with a gradient scaler (CUDA).

bf16 keeps float32's exponent range, so it needs no loss scaling; fp16 does (Micikevicius
et al. 2018), through ``torch.amp.GradScaler``, whose state goes into checkpoints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from nnblocks.errors import TrainingError
from nnblocks.train.callback import Callback

if TYPE_CHECKING:
    from nnblocks.train.learner import Learner

__all__ = ["MixedPrecision", "resolve_precision"]

_DTYPES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


def resolve_precision(option: str | None, device: torch.device) -> str | None:
    """The autocast dtype the Learner uses for ``mixed_precision=option`` on ``device``.

    ``"auto"``: bf16 on a CUDA device that supports it (Ampere and newer: tensor cores at
    bf16 rate, no loss scaling), nothing elsewhere (on CPU bf16 autocast is often slower).
    """
    if option != "auto":
        return option
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return None


class MixedPrecision(Callback):
    """Run forward and loss under autocast.

    Args:
        dtype: ``"bf16"`` (CPU or CUDA) or ``"fp16"`` (CUDA only; adds a gradient scaler).

    Raises:
        TrainingError: an unknown dtype, or fp16 on a device other than CUDA.
    """

    order = 20

    def __init__(self, dtype: str = "bf16"):
        if dtype not in _DTYPES:
            raise TrainingError(f"mixed_precision must be 'bf16' or 'fp16'. Received: {dtype!r}")
        self.dtype = _DTYPES[dtype]

    def context(self, device: torch.device) -> Any:
        return torch.autocast(device.type, dtype=self.dtype)

    def before_fit(self, learn: Learner) -> None:
        fp16 = self.dtype == torch.float16
        if fp16 and learn.device.type != "cuda":
            raise TrainingError(
                f"mixed_precision='fp16' needs a CUDA device (it relies on a gradient scaler); "
                f"this run is on {learn.device}. Use mixed_precision='bf16' there."
            )
        learn.autocast = self.context(learn.device)
        if fp16:
            if learn.scaler is None:
                learn.scaler = torch.amp.GradScaler("cuda")
            learn.step_fn = self._scaled_step(learn)

    @staticmethod
    def _scaled_step(learn: Learner) -> Any:
        scaler, opt = learn.scaler, learn.opt

        def step() -> None:
            scaler.step(opt)  # skips the step when the gradients overflowed
            scaler.update()

        return step

    def before_backward(self, learn: Learner) -> None:
        if learn.scaler is not None:
            learn.loss_grad = learn.scaler.scale(learn.loss_grad)

    def state_dict(self) -> dict[str, Any]:
        return {}
