"""Using a trained model: ``predict`` and ``evaluate`` over a split or any data, in order.

Both run the model itself (never the DDP wrapper) in eval mode under ``inference_mode``,
never shuffle, and use the Learner's mixed-precision context.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from nnblocks.errors import DataError
from nnblocks.train.loaders import make_loader

if TYPE_CHECKING:
    from nnblocks.train.learner import Learner

__all__ = ["loader_for", "predict", "evaluate"]


def loader_for(learn: Learner, data: Any, batch_size: int | None = None) -> Any:
    """An unshuffled loader for a split name (default: test, else valid), data or a tensor.

    Raises:
        DataError: an unknown or missing split.
    """
    if data is None:
        data = "test" if learn.splits.get("test") is not None else "valid"
    if isinstance(data, str):
        if data not in ("train", "valid", "test"):
            raise DataError(f"Received an unknown split `{data}`: expected train, valid or test.")
        if learn.splits.get(data) is None:
            raise DataError(f"the data has no `{data}` split.")
        data = learn.splits[data]
    elif isinstance(data, torch.Tensor):
        from nnblocks.data.tensors import TensorData

        data = TensorData(data, n_inputs=1)
    return make_loader(
        data,
        batch_size or learn.valid_batch_size,
        shuffle=False,
        device=learn.device,
        collate_fn=getattr(learn.task, "collate", None),
        num_workers=learn.num_workers,
    )


def _to_cpu(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.cpu()
    if isinstance(x, (tuple, list)):
        return type(x)(_to_cpu(v) for v in x)
    return x


def _concat(parts: list[Any]) -> Any:
    if parts and all(isinstance(p, torch.Tensor) for p in parts):
        try:
            return torch.cat(parts)
        except RuntimeError:  # per-batch shapes differ (trimmed sequences)
            return parts
    return parts


def predict(
    learn: Learner, data: Any = None, *, with_targets: bool = False, batch_size: int | None = None
) -> Any:
    """See ``Learner.predict``."""
    loader = loader_for(learn, data, batch_size)
    n = 1 if isinstance(data, torch.Tensor) else learn.n_inputs
    outs, tgts = [], []
    learn.model.eval()
    with torch.inference_mode(), learn.autocast:
        for batch in loader:
            outs.append(_to_cpu(learn.model(*batch[:n])))
            if with_targets:
                tgts.append(tuple(_to_cpu(t) for t in batch[n:]))
    out = _concat(outs)
    if not with_targets:
        return out
    targets = tuple(_concat([t[i] for t in tgts]) for i in range(len(tgts[0]))) if tgts else ()
    return out, targets[0] if len(targets) == 1 else targets


def evaluate(
    learn: Learner, data: Any = None, *, batch_size: int | None = None
) -> dict[str, float]:
    """See ``Learner.evaluate``."""
    split = data if isinstance(data, str) else None
    if data is None:
        split = "test" if learn.splits.get("test") is not None else "valid"
    loader = loader_for(learn, split or data, batch_size)
    loss, metrics = learn._evaluate_loader(loader, fire=False)
    result = {"loss": loss, **metrics}
    task_eval = getattr(learn.task, "evaluate", None)
    if split is not None and callable(task_eval):
        learn.model.eval()
        with torch.inference_mode():
            result.update(task_eval(learn.model, split=split))
    return result
