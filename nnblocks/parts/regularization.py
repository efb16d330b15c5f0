"""Contract and built-in parts of kind `regularization`.

Contract:

- Construction: ``Part(p=0.1, **options)``; ``p`` is the drop probability in ``[0, 1)``.
- Call: ``part(x) -> y`` with ``y`` of the shape, dtype and device of ``x``.
- Train-time only: in eval mode (and with ``p=0``) the part returns ``x`` itself, so it
  costs nothing at inference. In train mode the kept values are scaled by ``1 / (1 - p)``
  so that the expected output equals the input.
- No parameters and no state: one instance may be called at several places.

Built-ins: ``dropout`` (element-wise, Srivastava et al. 2014) and ``drop_path`` (stochastic
depth, Huang et al. 2016: the whole sample is dropped, for residual branches).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nnblocks.parts.boundary import check_probability
from nnblocks.registry import register

__all__ = ["Dropout", "DropPath", "drop_path"]


@register("regularization", "dropout")
class Dropout(nn.Module):
    """Element-wise dropout (Srivastava et al. 2014), through ``F.dropout``.

    Args:
        p: probability of zeroing each element, in ``[0, 1)``.

    Call arguments:
        x: a tensor of any shape.

    Returns:
        In train mode, ``x`` with each element zeroed with probability ``p`` and the rest
        scaled by ``1 / (1 - p)``; in eval mode or with ``p=0``, ``x`` itself.

    Raises:
        SpecError: ``p`` is not in ``[0, 1)``.

    Example:
        >>> import torch, nnblocks
        >>> drop = nnblocks.build({"name": "dropout", "p": 0.2}, "regularization")
        >>> drop.eval()(torch.ones(3)).tolist()
        [1.0, 1.0, 1.0]
    """

    def __init__(self, p: float = 0.1):
        super().__init__()
        self.p = check_probability(p, "p", where="regularization part `dropout`")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return F.dropout(x, self.p, training=True)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def drop_path(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Stochastic depth on a residual branch: drop whole samples (Huang et al. 2016).

    Args:
        x: ``[B, ...]``; each sample ``x[b]`` is kept or zeroed as a whole.
        p: probability of dropping a sample, in ``[0, 1)``.
        training: apply the noise; ``False`` returns ``x``.

    Returns:
        ``x`` with each sample zeroed with probability ``p`` and the kept ones scaled by
        ``1 / (1 - p)``, same shape, dtype and device.

    Example:
        >>> import torch, nnblocks
        >>> from nnblocks.parts.regularization import drop_path
        >>> y = drop_path(torch.ones(1000, 2), p=0.5)
        >>> sorted(y.unique().tolist())
        [0.0, 2.0]
    """
    if not training or p == 0.0:
        return x
    keep = 1.0 - p
    # One Bernoulli draw per sample, broadcast over the other axes: [B, 1, ..., 1].
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask.div_(keep)


@register("regularization", "drop_path")
class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): drop a residual branch per sample.

    Used on the output of a residual branch, ``x + drop_path(f(x))``: each sample of the
    batch skips the branch with probability ``p``, which regularises deep networks and
    shortens their expected depth during training.

    Args:
        p: probability of dropping a sample, in ``[0, 1)``.

    Call arguments:
        x: ``[B, ...]``, batch first.

    Returns:
        In train mode, ``x`` with each sample zeroed with probability ``p`` and the kept
        samples scaled by ``1 / (1 - p)``; in eval mode or with ``p=0``, ``x`` itself.

    Raises:
        SpecError: ``p`` is not in ``[0, 1)``.

    Example:
        >>> import torch, nnblocks
        >>> drop = nnblocks.build({"name": "drop_path", "p": 0.1}, "regularization")
        >>> drop(torch.randn(8, 5, 16)).shape
        torch.Size([8, 5, 16])
    """

    def __init__(self, p: float = 0.1):
        super().__init__()
        self.p = check_probability(p, "p", where="regularization part `drop_path`")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
