"""Contract and built-in parts of kind `norm`.

Contract:

- Construction: ``Part(dim, **options)``; ``dim`` is the number of features, every option
  has a default.
- Call: ``part(x) -> y`` with ``y`` of the shape, dtype and device of ``x``. The features
  are the last axis, for inputs of any rank (``[B, D]``, ``[B, T, D]``, ...).
- Built-ins also take ``channels_first=False``: with ``True`` the features are axis 1, as in
  images ``[B, C, H, W]`` and ``[B, C, T]`` signals.
- A norm with running statistics (``batch``) behaves differently in train and eval mode and
  updates its statistics only in train mode; the others have no state between calls.
- A wrong feature width raises ``ShapeError`` naming the part, its slot, the expected width
  and the received shape.

Built-ins use torch's fused functions (``F.layer_norm``, ``F.rms_norm``, ``F.batch_norm``):
``layer`` (Ba et al. 2016), ``rms`` (Zhang & Sennrich 2019), ``batch`` (Ioffe & Szegedy 2015).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nnblocks.errors import ShapeError
from nnblocks.parts._docs import shared_sections
from nnblocks.parts.boundary import check_positive_int, check_value, check_width
from nnblocks.registry import register
from nnblocks.spec import current_path

__all__ = ["LayerNorm", "RMSNorm", "BatchNorm"]


def _check_dim(dim: int, part: str) -> int:
    return check_positive_int(dim, "dim", where=f"norm part `{part}`")


def _check_eps(eps: float, part: str) -> float:
    ok = isinstance(eps, (int, float)) and not isinstance(eps, bool) and eps >= 0
    check_value(ok, eps, "eps", where=f"norm part `{part}`", expected="a non-negative number")
    return float(eps)


_CALL_DOC = """
    Call arguments:
        x: ``[..., D]``, or ``[B, D, ...]`` with ``channels_first=True``.

    Returns:
        The normalised tensor, same shape, dtype and device as ``x``.
"""

_RAISES_DOC = """
    Raises:
        SpecError: ``dim`` is not a positive integer or ``eps`` is negative.
        ShapeError: ``x`` does not have ``dim`` features on the feature axis.
"""


class _FeatureNorm(nn.Module):
    """Shared plumbing: the feature axis, ``eps``, the shape check and the error message.

    Its ``forward`` serves the norms over the feature axis alone (``layer``, ``rms``): they
    define ``_normalise_last(x [..., D])``; ``batch`` has its own.
    """

    part_name = ""

    def __init__(self, dim: int, channels_first: bool, eps: float):
        super().__init__()
        self.dim = _check_dim(dim, self.part_name)
        self.channels_first = bool(channels_first)
        self.eps = _check_eps(eps, self.part_name)
        self._path = current_path()  # the slot, for error messages at call time
        # The message's words, formatted once rather than at every forward.
        self._axis = 1 if self.channels_first else -1
        layout = "[B, C, ...] (channels_first=True)" if self.channels_first else "[..., D]"
        self._expected = f"input {layout} with {self.dim} features on axis {self._axis}"
        self._where = f"norm part `{self.part_name}`"

    def _check_input(self, x: torch.Tensor) -> None:
        check_width(
            x, self.dim, where=self._where, path=self._path, expected=self._expected,
            axis=self._axis,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"{self.dim}, channels_first={self.channels_first}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        if self.channels_first:
            # The fused kernels normalise trailing axes: move the channels there and back
            # (views, no copy).
            return self._normalise_last(x.movedim(1, -1)).movedim(-1, 1)
        return self._normalise_last(x)

    def _normalise_last(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@register("norm", "layer")
@shared_sections(_CALL_DOC + _RAISES_DOC)
class LayerNorm(_FeatureNorm):
    """Layer normalisation over the features (Ba et al. 2016), through ``F.layer_norm``.

    Args:
        dim: number of features D.
        eps: added to the variance for numerical stability.
        bias: learn an additive bias (``False`` gives the bias-free LayerNorm of recent LMs).
        elementwise_affine: learn a per-feature scale (and bias).
        channels_first: features on axis 1 (``[B, C, H, W]``) instead of the last axis.

    Example:
        >>> import torch, nnblocks
        >>> norm = nnblocks.build("layer", "norm", dim=64)
        >>> y = norm(3 + 2 * torch.randn(2, 5, 64))  # each row: mean 0, variance 1
        >>> torch.allclose(y.mean(-1), torch.zeros(2, 5), atol=1e-5)
        True
    """

    part_name = "layer"

    def __init__(
        self,
        dim: int,
        eps: float = 1e-5,
        bias: bool = True,
        elementwise_affine: bool = True,
        channels_first: bool = False,
    ):
        super().__init__(dim, channels_first, eps)
        self.weight = nn.Parameter(torch.ones(dim)) if elementwise_affine else None
        self.bias = nn.Parameter(torch.zeros(dim)) if elementwise_affine and bias else None

    def _normalise_last(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (self.dim,), self.weight, self.bias, self.eps)


@register("norm", "rms")
@shared_sections(_CALL_DOC + _RAISES_DOC)
class RMSNorm(_FeatureNorm):
    """Root-mean-square normalisation (Zhang & Sennrich 2019), through ``F.rms_norm``.

    Rescales by ``1 / sqrt(mean(x**2) + eps)`` without centring: cheaper than LayerNorm
    and as good in transformers, which is why T5 and LLaMA use it.

    Args:
        dim: number of features D.
        eps: added to the mean square for numerical stability.
        elementwise_affine: learn a per-feature scale.
        channels_first: features on axis 1 (``[B, C, H, W]``) instead of the last axis.

    Example:
        >>> import torch, nnblocks
        >>> norm = nnblocks.build("rms", "norm", dim=64)
        >>> y = norm(5 * torch.randn(2, 5, 64))  # each row: mean square 1, not centred
        >>> torch.allclose(y.pow(2).mean(-1), torch.ones(2, 5), atol=1e-3)
        True
    """

    part_name = "rms"

    def __init__(
        self,
        dim: int,
        eps: float = 1e-6,
        elementwise_affine: bool = True,
        channels_first: bool = False,
    ):
        super().__init__(dim, channels_first, eps)
        self.weight = nn.Parameter(torch.ones(dim)) if elementwise_affine else None

    def _normalise_last(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (self.dim,), self.weight, self.eps)


@register("norm", "batch")
@shared_sections(_CALL_DOC)
class BatchNorm(_FeatureNorm):
    """Batch normalisation with running statistics (Ioffe & Szegedy 2015), through ``F.batch_norm``.

    Statistics are taken over every axis but the features: ``[B, D]`` over the batch,
    ``[B, T, D]`` over batch and time, ``[B, C, H, W]`` (``channels_first=True``) over batch
    and pixels. In train mode the batch statistics normalise and update the running ones; in
    eval mode the running statistics normalise. The parameter and buffer names match
    ``torch.nn.BatchNorm1d``, so its state dicts load.

    Args:
        dim: number of features D (channels C).
        eps: added to the variance for numerical stability.
        momentum: weight of the new batch in the running averages; ``None`` keeps a
            cumulative average over all batches seen.
        affine: learn a per-feature scale and bias.
        track_running_stats: keep running statistics; without them eval mode uses batch
            statistics too.
        channels_first: features on axis 1 (``[B, C, H, W]``) instead of the last axis.

    Raises:
        SpecError: ``dim`` is not a positive integer, ``eps`` is negative or ``momentum`` is
            outside ``[0, 1]``.
        ShapeError: ``x`` does not have ``dim`` features on the feature axis, or has one
            value per feature while training (no variance to estimate).

    Example:
        >>> import torch, nnblocks
        >>> norm = nnblocks.build({"name": "batch", "channels_first": True}, "norm", dim=3)
        >>> norm(torch.randn(4, 3, 8, 8)).shape
        torch.Size([4, 3, 8, 8])
    """

    part_name = "batch"

    def __init__(
        self,
        dim: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        channels_first: bool = False,
    ):
        super().__init__(dim, channels_first, eps)
        ok = momentum is None or (isinstance(momentum, (int, float)) and 0.0 <= momentum <= 1.0)
        where = "norm part `batch`"
        check_value(ok, momentum, "momentum", where=where, expected="a number in [0, 1] or None")
        self.momentum = momentum
        self.track_running_stats = bool(track_running_stats)
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None
        self.bias = nn.Parameter(torch.zeros(dim)) if affine else None
        if self.track_running_stats:
            self.register_buffer("running_mean", torch.zeros(dim))
            self.register_buffer("running_var", torch.ones(dim))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.running_mean: torch.Tensor | None = None
            self.running_var: torch.Tensor | None = None
            self.num_batches_tracked: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        use_batch_stats = self.training or not self.track_running_stats
        if use_batch_stats and x.numel() == self.dim:
            where = f" at `{self._path}`" if self._path else ""
            raise ShapeError(
                f"norm part `batch`{where}: expected more than one value per feature to "
                f"estimate batch statistics in train mode. Received: shape {tuple(x.shape)}"
            )
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            assert self.num_batches_tracked is not None
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average, as torch.nn.BatchNorm
                factor = 1.0 / float(self.num_batches_tracked)
        if self.channels_first or x.dim() == 2:
            # F.batch_norm's layout already: [N, C, *].
            return self._normalise(x, use_batch_stats, factor)
        # [..., D] -> [N, D]: a view for contiguous input; statistics over every row.
        y = self._normalise(x.reshape(-1, self.dim), use_batch_stats, factor)
        return y.view(x.shape)

    def _normalise(self, x: torch.Tensor, use_batch_stats: bool, factor: float) -> torch.Tensor:
        return F.batch_norm(
            x,
            self.running_mean if not self.training or self.track_running_stats else None,
            self.running_var if not self.training or self.track_running_stats else None,
            self.weight,
            self.bias,
            use_batch_stats,
            factor,
            self.eps,
        )
