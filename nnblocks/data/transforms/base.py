"""The transform contract: fitted on the training split only, then applied.

Two sorts of transform (kind `transform`):

- *preprocessing* (``augmentation = False``): ``fit(train)`` learns statistics from the
  training split only, then ``transform(x)`` is applied once to every split at load time
  (normalisation, categorical codes, missing-value filling). ``fit_apply`` is the one
  place that does this, so validation and test statistics can never leak into training.
- *augmentation* (``augmentation = True``): ``transform(batch)`` draws new random changes
  every call; it is applied to each training batch only (``AugmentedData``), never to
  validation or test data. It learns nothing (``fit`` is a no-op).

``to_dict()`` returns plain JSON data (the options and the fitted statistics), so a
fitted preprocessing step can be saved beside the model and reapplied at inference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from nnblocks.errors import DataError

__all__ = ["Transform", "fit_apply", "transform_from_dict"]


def received(x: Any) -> str:
    """What an input error message says it received: a tensor's dtype and shape, or the
    type's name for anything else."""
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__


class Transform:
    """Base of every transform. Subclasses override ``fit`` (if they learn), ``__call__``,
    ``options`` and ``state``."""

    name = "transform"
    augmentation = False

    def __init__(self) -> None:
        self.fitted = False

    def fit(self, x: Any) -> Transform:
        """Learn what the transform needs from the training split; returns self."""
        self.fitted = True
        return self

    def __call__(self, x: Any) -> Any:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise DataError(
                f"transform `{self.name}` is not fitted: call fit(train) on the training split first."
            )

    def options(self) -> dict[str, Any]:
        """Constructor arguments (plain data)."""
        return {}

    def state(self) -> dict[str, Any]:
        """Fitted statistics (plain data)."""
        return {}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore fitted statistics from ``state()`` data (marks the transform fitted)."""
        self.fitted = True

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: ``{"name", "options", "state"}`` (``transform_from_dict`` reads it)."""
        return {"name": self.name, "options": self.options(), "state": self.state()}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


def fit_apply(
    transform: Transform, splits: Mapping[str, Any], *, train: str = "train"
) -> dict[str, Any]:
    """Fit ``transform`` on ``splits[train]`` only and apply it to every split.

    Args:
        transform: a preprocessing transform.
        splits: split name -> that split's data (None entries are kept as None).
        train: the name of the split the statistics come from.

    Returns:
        split name -> transformed data.

    Raises:
        DataError: there is no training split, or ``transform`` is an augmentation (those
            are applied per training batch by ``AugmentedData``, not once to all splits).
    """
    if transform.augmentation:
        raise DataError(
            f"transform `{transform.name}` is an augmentation: apply it to training batches only "
            "(AugmentedData / a dataset's `augment=` option), not to every split."
        )
    if splits.get(train) is None:
        raise DataError(f"cannot fit transform `{transform.name}`: there is no `{train}` split.")
    transform.fit(splits[train])
    return {name: None if data is None else transform(data) for name, data in splits.items()}


def transform_from_dict(data: Mapping[str, Any]) -> Transform:
    """Rebuild a fitted transform from ``Transform.to_dict()`` data.

    Raises:
        DataError: the data is not a transform dict.

    Example:
        >>> import torch
        >>> from nnblocks.data.transforms import Normalize
        >>> norm = Normalize().fit(torch.tensor([[0.0], [2.0]]))
        >>> again = transform_from_dict(norm.to_dict())
        >>> again(torch.tensor([[3.0]])).item()
        2.0
    """
    from nnblocks.registry import build

    if not isinstance(data, Mapping) or not {"name", "options", "state"} <= set(data):
        raise DataError(
            "expected transform data with keys `name`, `options`, `state` (from Transform.to_dict()). "
            f"Received: {str(data)[:80]}"
        )
    transform = build({"name": data["name"], **data["options"]}, "transform")
    transform.load_state(data["state"])
    return transform
