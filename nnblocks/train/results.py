"""`show_results`: a few examples with the model's predictions, as a rich table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from nnblocks.errors import DataError

if TYPE_CHECKING:
    from nnblocks.train.learner import Learner

__all__ = ["show_results"]


def _first(data: Any, n: int, collate: Any) -> tuple[torch.Tensor, ...]:
    n = min(n, len(data))
    if hasattr(data, "tensors"):
        plain = data.plain() if hasattr(data, "plain") else data
        return plain[torch.arange(n)]
    from torch.utils.data import default_collate

    items = [data[i] for i in range(n)]
    batch = (collate or default_collate)(items)
    return tuple(batch) if isinstance(batch, (list, tuple)) else (batch,)


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

    Uses the task's ``decode_example`` (and, for seq2seq, its greedy ``generate``) to render
    readable text; otherwise shows tensors (argmax for class scores).

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
    batch = tuple(
        t.to(learn.device) if isinstance(t, torch.Tensor) else t
        for t in _first(data, n, getattr(task, "collate", None))
    )
    k = learn.n_inputs
    learn.model.eval()
    generates = (
        task is not None and getattr(task, "name", "") == "seq2seq" and hasattr(task, "generate")
    )
    with torch.inference_mode():
        if generates:  # seq2seq: show what greedy decoding answers, not teacher-forced logits
            preds = task.generate(learn.model, batch[0], max_new_tokens=batch[-1].shape[1] + 1)
        else:
            preds = learn.model(*batch[:k])
    rows = []
    for i in range(batch[0].shape[0]):
        sample = tuple(t[i].cpu() for t in batch)
        pred = preds[i].cpu() if isinstance(preds, torch.Tensor) else None
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
