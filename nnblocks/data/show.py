"""`show_batch`: see what the model sees — decoded examples as a table, or images as a PNG."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from nnblocks.errors import DataError

__all__ = ["show_batch"]


def _resolve(data: Any, split: str, task: Any) -> tuple[Any, Any]:
    # A DataBundle is recognised by what it has (named splits and a task), not by its class:
    # the bundle uses this module, so importing it here would close a circle.
    split_of = getattr(data, "split", None)
    if callable(split_of) and hasattr(data, "task"):
        return split_of(split), task or data.task
    if task is None:
        raise DataError("show_batch needs a DataBundle, or data together with its task (task=...).")
    return data, task


def show_batch(
    data: Any,
    *,
    split: str = "train",
    n: int = 8,
    path: str | Path | None = None,
    task: Any = None,
    console: Any = None,
) -> str | Path:
    """Show the first ``n`` examples of a split, decoded the way the task reads them.

    The training split is shown *with* its augmentation (it is what the model trains on).
    Images are saved as a PNG grid titled with their labels; everything else (text,
    tables, sequences) is printed as a table.

    Args:
        data: a DataBundle, or a TensorData with ``task=``.
        split: the split of a DataBundle to show.
        n: how many examples.
        path: where to save the PNG of images (default ``show_batch_<split>.png`` in the
            current folder).
        task: the task, when ``data`` is not a DataBundle.
        console: a ``rich.console.Console`` to print to (default: a new one on stdout).

    Returns:
        the PNG path (images), or the printed table as plain text.

    Raises:
        DataError: no task to decode with, or an empty split.

    Example:
        >>> nnblocks.data.load("numbers").show_batch(n=4)  # doctest: +SKIP
    """
    data, task = _resolve(data, split, task)
    count = min(n, len(data))
    if count == 0:
        raise DataError(f"show_batch: the `{split}` split is empty.")
    batch = data[torch.arange(count)]
    n_inputs = int(getattr(data, "n_inputs", 1))
    if task.input_kind == "image":
        return _image_grid(batch, n_inputs, task, Path(path or f"show_batch_{split}.png"))
    return _table(batch, n_inputs, task, split, console)


def _table(
    batch: tuple[torch.Tensor, ...], n_inputs: int, task: Any, split: str, console: Any
) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{split}: {len(batch[0])} examples ({task.name})", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("input", overflow="fold")
    table.add_column("target", overflow="fold")
    rows = []
    for i in range(len(batch[0])):
        sample = tuple(t[i] for t in batch)
        shown = task.decode_example(sample, n_inputs=n_inputs)
        rows.append((str(i), shown["input"], shown.get("target", "")))
        table.add_row(*rows[-1])
    console = console or Console()
    console.print(table)
    return "\n".join("\t".join(r) for r in rows)


def _image_grid(batch: tuple[torch.Tensor, ...], n_inputs: int, task: Any, path: Path) -> Path:
    # A bare Figure draws to a file without pyplot: no window, no change of the user's backend.
    from matplotlib.figure import Figure

    images = batch[0].detach().float().cpu()  # [B, C, H, W]
    count = len(images)
    cols = min(count, 8)
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(1.6 * cols, 1.8 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(count):
        img = images[i]
        # min-max per image: normalised pixels are not in [0, 1], but their contrast is what counts
        img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-8)
        ax = axes.flat[i]
        if img.shape[0] == 1:
            ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(img.permute(1, 2, 0).numpy())
        if len(batch) > n_inputs:
            ax.set_title(task.render_target([t[i] for t in batch[n_inputs:]]), fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
