"""Using a model: ``batches`` (the one evaluation path, ``Learner.get_preds``), ``predict``
and ``evaluate``.

Every pass over data after training goes through the Learner's loaders and its batch
function (``Loop._do_batch``, the same one training and validation use), in eval mode under
``inference_mode`` with the Learner's mixed-precision context, never shuffled, with the
callbacks quiet. A task's own evaluation (``Task.evaluate``) gets its predictions from here:
the Learner hands it ``gather``, so the task only scores them.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import torch

from nnblocks.errors import DataError
from nnblocks.train.loaders import make_loader

if TYPE_CHECKING:
    from nnblocks.train.learner import Learner

__all__ = ["loader_for", "batches", "joined", "predict", "evaluate", "task_metrics", "concat"]


def _resolve(learn: Learner, data: Any) -> Any:
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
    return data.plain() if hasattr(data, "plain") else data  # never augment a prediction


def loader_for(learn: Learner, data: Any, batch_size: int | None = None) -> Any:
    """An unshuffled loader for a split name (default: test, else valid), data or a tensor.

    Raises:
        DataError: an unknown or missing split.
    """
    return make_loader(
        _resolve(learn, data),
        batch_size or learn.valid_batch_size,
        shuffle=False,
        device=learn.device,
        collate_fn=getattr(learn.task, "collate", None),
        num_workers=learn.num_workers,
    )


def concat(parts: list[Any]) -> Any:
    """Per-batch tensors joined along the batch axis (the list itself when shapes differ)."""
    if parts and all(isinstance(p, torch.Tensor) for p in parts):
        try:
            return torch.cat(parts)
        except RuntimeError:  # per-batch shapes differ (trimmed sequences)
            return parts
    return parts


def batches(
    learn: Learner,
    data: Any,
    step: Any = None,
    with_loss: bool = False,
    batch_size: int | None = None,
) -> tuple[list[Any], list[tuple[Any, ...]], list[torch.Tensor]]:
    """Per-batch predictions, targets and losses (empty without ``with_loss``) over ``data``,
    in order: what ``Learner.get_preds`` returns, before joining (see there)."""
    loader = loader_for(learn, data, batch_size)
    n = 1 if isinstance(data, torch.Tensor) else None
    return learn._gather(loader, step=step, with_loss=with_loss, n_inputs=n)


def joined(
    outs: list[Any], tgts: list[tuple[Any, ...]], losses: list[torch.Tensor]
) -> tuple[Any, Any, torch.Tensor | None]:
    """``batches`` joined: the predictions, the targets (one, or a tuple), the losses."""
    width = len(tgts[0]) if tgts else 0
    columns = tuple(concat([t[i] for t in tgts]) for i in range(width))
    targets = columns[0] if len(columns) == 1 else columns
    return concat(outs), targets, torch.stack(losses) if losses else None


def predict(
    learn: Learner, data: Any = None, *, with_targets: bool = False, batch_size: int | None = None
) -> Any:
    """See ``Learner.predict``."""
    out, targets, _ = joined(*batches(learn, data, batch_size=batch_size))
    return (out, targets) if with_targets else out


def task_metrics(learn: Learner, split: Any, **options: Any) -> dict[str, Any]:
    """The task's own evaluation of ``learn.model`` on ``split``, fed by ``get_preds``."""
    task_eval = getattr(learn.task, "evaluate", None)
    if not callable(task_eval):
        return {}

    def gather(data: Any, step: Any, batch_size: int | None = None) -> tuple[Any, ...]:
        return batches(learn, data, step, batch_size=batch_size)[:2]

    # A task written before `gather` existed still works; it batches by itself.
    if "gather" in inspect.signature(task_eval).parameters:
        options["gather"] = gather
    return dict(task_eval(learn.model, split, **options))


def evaluate(
    learn: Learner, data: Any = None, *, batch_size: int | None = None
) -> dict[str, float]:
    """See ``Learner.evaluate``."""
    split = data if isinstance(data, str) else None
    if data is None:
        split = "test" if learn.splits.get("test") is not None else "valid"
    loader = loader_for(learn, split or data, batch_size)
    loss, metrics = learn._quiet_pass(lambda: learn._validate(loader), learn._end_validate)
    result = {"loss": loss, **metrics}
    if split is not None:
        result.update(task_metrics(learn, split))
    return result
