"""`show_results`: a few examples with the model's predictions, as a rich table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from nnblocks.errors import DataError

if TYPE_CHECKING:
    from nnblocks.train.learner import Learner

__all__ = ["show_results"]


def _first(data: Any, n: int, collate: Any) -> tuple[Any, tuple[torch.Tensor, ...]]:
    """The first ``n`` examples of ``data``: as data (for ``get_preds``) and as one batch."""
    n = min(n, len(data))
    if hasattr(data, "tensors"):
        plain = data.plain() if hasattr(data, "plain") else data
        return plain.subset(torch.arange(n)), plain[torch.arange(n)]
    from torch.utils.data import Subset, default_collate

    items = [data[i] for i in range(n)]
    batch = (collate or default_collate)(items)
    return Subset(data, range(n)), tuple(batch) if isinstance(batch, (list, tuple)) else (batch,)


def _rows(preds: Any) -> list[Any]:
    """One prediction per example, from ``get_preds``' output (a tensor or per-batch list)."""
    if isinstance(preds, torch.Tensor):
        return list(preds)
    if isinstance(preds, list):
        return [row for part in preds for row in _rows(part)]
    return []


def _short(t: Any) -> str:
    if not isinstance(t, torch.Tensor):
        return str(t)
    if t.numel() == 1:
        v = t.item()
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    values = t.flatten()[:6].tolist()
    text = ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in values)
    return f"[{text}{', ...' if t.numel() > 6 else ''}]"


def show_results(learn: Learner, n: int = 8, split: str | None = None) -> list[dict[str, str]]:
    """Print ``n`` examples of ``split`` (default: valid, else test, else train) with predictions.

    Predictions come from ``learn.get_preds`` with the task's ``predict_step`` (what a
    person reads: greedy decoding for seq2seq); the task's ``decode_example`` renders
    them; without a task, tensors are shown (argmax for class scores).

    Returns:
        The rows shown, ``[{"input", "target", "prediction"}]``.

    Raises:
        DataError: the split does not exist.
    """
    from rich.console import Console
    from rich.table import Table

    if split is None:
        split = next(
            (s for s in ("valid", "test", "train") if learn.splits.get(s) is not None), "train"
        )
    data = learn.splits.get(split)
    if data is None:
        raise DataError(f"show_results: the data has no `{split}` split.")
    task = learn.task
    subset, batch = _first(data, n, getattr(task, "collate", None))
    k = learn.n_inputs
    # The task says what a prediction is (greedy decoding for seq2seq, not teacher-forced
    # logits); get_preds runs it as every evaluation runs.
    step = getattr(task, "predict_step", None)
    preds = _rows(learn.get_preds(subset, step=step, batch_size=max(1, len(subset)))[0])
    rows = []
    for i in range(batch[0].shape[0]):
        sample = tuple(t[i].cpu() for t in batch)
        pred = preds[i] if i < len(preds) else None
        if task is not None and hasattr(task, "decode_example"):
            rows.append(task.decode_example(sample, pred, n_inputs=k))
        else:
            shown = (
                pred.argmax(-1)
                if pred is not None
                and pred.is_floating_point()
                and pred.dim() >= 1
                and pred.numel() > 1
                else pred
            )
            rows.append(
                {
                    "input": ", ".join(_short(t) for t in sample[:k]),
                    "target": ", ".join(_short(t) for t in sample[k:]),
                    "prediction": _short(shown),
                }
            )
    table = Table(title=f"results on {split}")
    for column in ("input", "target", "prediction", ""):
        table.add_column(column, overflow="fold")
    for row in rows:
        same = "target" in row and row.get("target") == row.get("prediction")
        cells = [str(row.get(c, "")) for c in ("input", "target", "prediction")]
        table.add_row(*cells, "ok" if same else "")
    console = Console()
    if not console.is_terminal:  # logs and CI: wide enough that rows do not fold
        console = Console(width=160)
    console.print(table)
    return rows
