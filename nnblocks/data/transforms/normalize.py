"""Normalisation with statistics of the training split only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from nnblocks.data.transforms.base import Transform, received
from nnblocks.errors import DataError
from nnblocks.registry import register

__all__ = ["Normalize"]


@register("transform", "normalize")
class Normalize(Transform):
    """Subtract the mean and divide by the standard deviation of the training split.

    Statistics are per feature for tables ``[N, F]`` (over rows), per channel for images
    ``[N, C, H, W]`` (over rows and pixels), and per last-axis feature for other ranks.
    A feature that is constant in training (std below ``eps``) is only centred.

    Args:
        eps: smallest standard deviation treated as non-zero.

    Raises:
        DataError: applied before ``fit``, to a non-float tensor, or to data whose feature
            count differs from the training split's.

    Example:
        >>> norm = Normalize().fit(torch.tensor([[0.0], [2.0]]))
        >>> norm(torch.tensor([[1.0], [3.0]])).flatten().tolist()
        [0.0, 2.0]
    """

    name = "normalize"

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    @staticmethod
    def _axes(x: torch.Tensor) -> tuple[int, ...]:
        if x.dim() == 4:
            return (0, 2, 3)  # images [N, C, H, W]: per channel
        return tuple(range(x.dim() - 1))  # per last-axis feature

    def fit(self, x: torch.Tensor) -> Normalize:
        """Compute mean and std of ``x`` (the training split)."""
        x = self._check_input(x)
        if len(x) == 0:
            raise DataError("transform `normalize`: cannot fit on an empty training split.")
        axes = self._axes(x)
        # float64 accumulation: the mean of many float32 values drifts otherwise
        mean = x.double().mean(dim=axes, keepdim=True)
        std = x.double().std(dim=axes, keepdim=True, unbiased=False)
        std = torch.where(std < self.eps, torch.ones_like(std), std)
        self.mean, self.std = mean[0].to(x.dtype), std[0].to(x.dtype)  # drop the N axis
        self.fitted = True
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        x = self._check_input(x)
        assert self.mean is not None and self.std is not None
        expected, got = tuple(self.mean.shape), tuple(x.shape[1:])
        if len(got) != len(expected) or any(e not in (1, g) for e, g in zip(expected, got)):
            raise DataError(
                f"transform `normalize` was fitted on rows of shape {expected} (1 = any size); "
                f"received rows of shape {got}."
            )
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation (e.g. predicted regression targets -> original units)."""
        self._check_fitted()
        assert self.mean is not None and self.std is not None
        return x * self.std.to(x.device, x.dtype) + self.mean.to(x.device, x.dtype)

    def _check_input(self, x: Any) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
            raise DataError(
                "transform `normalize` expects a float tensor [N, ...] with rows first. "
                f"Received: {received(x)}"
            )
        return x

    def options(self) -> dict[str, Any]:
        return {"eps": self.eps}

    def state(self) -> dict[str, Any]:
        if self.mean is None or self.std is None:
            return {}
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        if state:
            self.mean = torch.tensor(state["mean"], dtype=torch.float32)
            self.std = torch.tensor(state["std"], dtype=torch.float32)
        self.fitted = bool(state)
