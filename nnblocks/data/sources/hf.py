"""Source: Hugging Face ``datasets`` on the local disk, memory-mapped (Arrow), never downloaded.

A folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` is opened with
``datasets.load_from_disk``; local parquet, JSON lines or CSV files (a file, a folder, or
``{split: file}``) go through ``datasets.load_dataset`` with its packaged readers, which turn
them into Arrow files once (in ``cache_dir``). Either way the rows stay in those
memory-mapped Arrow files: a split is an ``ArrowData`` that gathers the rows of a batch by
index (``dataset[indices]``), so nothing is copied into Python objects up front.

Column mapping: ``inputs`` name the model's input columns (numeric scalars are stacked into
``[B, F]`` features; one fixed-shape array column is taken as is, ``[B, ...]``) and
``targets`` the label or value columns.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnblocks.data.bundle import DataBundle
from nnblocks.data.splits import make_splits
from nnblocks.data.tasks import ClassificationTask, RegressionTask, Task
from nnblocks.errors import DataError

__all__ = ["ArrowData", "from_hf"]

_SPLIT_NAMES = {"train": "train", "validation": "valid", "valid": "valid", "test": "test"}
_FILE_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


class ArrowData:
    """Rows of a (memory-mapped) ``datasets.Dataset`` batched by index, like ``TensorData``.

    Args:
        dataset: the Arrow-backed dataset.
        inputs: input columns (scalars stacked into ``[B, F]``, or one array column).
        targets: target columns.
        classes: for a classification target, the class list (labels -> ids by it).

    A batch ``data[idx [B]]`` is ``(x, y)``: one gather of the rows from the Arrow file.
    ``tensors`` is a zero-width placeholder ``[N, 0]`` carrying the length and the device
    for the Learner's index loader; ``to(device)`` makes batches arrive there.
    """

    def __init__(
        self,
        dataset: Any,
        inputs: Sequence[str],
        targets: Sequence[str],
        *,
        classes: Sequence[Any] | None = None,
        device: torch.device | str = "cpu",
    ):
        self.dataset = dataset.with_format("numpy", columns=[*inputs, *targets])
        self.inputs, self.targets = list(inputs), list(targets)
        self.classes = list(classes) if classes is not None else None
        self._index = {c: i for i, c in enumerate(self.classes or [])}
        self.device = torch.device(device)
        self.n_inputs = 1
        self.names = ["x", "y"]
        self.trim: dict[int, int] = {}
        self.tensors = (torch.empty(len(dataset), 0, device=self.device),)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int | slice | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        single = isinstance(index, int)
        if isinstance(index, slice):
            index = torch.arange(len(self))[index]
        rows = torch.as_tensor(index).reshape(-1).tolist()
        columns = self.dataset[rows]  # {column: array [B, ...]}: one Arrow take
        x = self._features([columns[c] for c in self.inputs])  # [B, F] or [B, ...]
        y = self._labels([columns[c] for c in self.targets])  # [B] ids or [B, K] values
        if self.device.type != "cpu":
            x, y = (t.pin_memory().to(self.device, non_blocking=True) for t in (x, y))
        return (x[0], y[0]) if single else (x, y)

    def _features(self, arrays: list[np.ndarray]) -> torch.Tensor:
        if len(arrays) == 1 and arrays[0].ndim > 1:
            out = torch.from_numpy(np.ascontiguousarray(arrays[0]))
        else:
            out = torch.from_numpy(np.stack(arrays, axis=1))  # [B, F]
        return out.float() if out.is_floating_point() else out

    def _labels(self, arrays: list[np.ndarray]) -> torch.Tensor:
        if self.classes is not None:
            return torch.tensor(
                [self._index[v.item() if hasattr(v, "item") else v] for v in arrays[0]]
            )
        return torch.from_numpy(np.stack(arrays, axis=1).astype(np.float32))  # [B, K]

    def to(self, device: torch.device | str) -> ArrowData:
        """The same rows, delivered on ``device`` (pinned host memory, then a copy)."""
        return ArrowData(
            self.dataset, self.inputs, self.targets, classes=self.classes, device=device
        )

    def __repr__(self) -> str:
        return f"ArrowData({len(self)} rows; inputs={self.inputs}; targets={self.targets})"


def _open(path: Path, cache_dir: str | None, where: str) -> Any:
    """A DatasetDict or Dataset from a saved folder or local data files (nothing downloaded)."""
    import datasets

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    if path.is_dir() and any((path / n).is_file() for n in ("dataset_dict.json", "state.json")):
        return datasets.load_from_disk(str(path))
    files = (
        sorted(p for p in path.rglob("*") if p.suffix in _FILE_BUILDERS)
        if path.is_dir()
        else [path]
    )
    kinds = {_FILE_BUILDERS.get(p.suffix) for p in files}
    if not files or None in kinds or len(kinds) != 1:
        raise DataError(
            f"{where}: expected a folder saved with `save_to_disk`, or local "
            f"{'/'.join(sorted(_FILE_BUILDERS))} files of one kind. Received: `{path}`"
        )
    by_split: dict[str, list[str]] = {}
    for p in files:  # files named like a split (valid.parquet, test.jsonl) are that split
        split = next((s for s in _SPLIT_NAMES if p.stem.startswith(s)), "train")
        by_split.setdefault(split, []).append(str(p))
    try:
        return datasets.load_dataset(kinds.pop(), data_files=by_split, cache_dir=cache_dir)
    except (ValueError, OSError, datasets.exceptions.DatasetGenerationError) as exc:
        raise DataError(f"{where}: cannot read `{path}` with `datasets`: {exc}") from exc


def _check_columns(ds: Any, columns: Sequence[str], where: str, split: str) -> None:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise DataError(
            f"{where}: column(s) {missing} not found in the `{split}` split. "
            f"Columns: {ds.column_names}"
        )


def _numeric(ds: Any, columns: Sequence[str], where: str) -> None:
    for c in columns:
        dtype = getattr(ds.features[c], "dtype", None) or _inner_dtype(ds.features[c])
        if not any(k in str(dtype) for k in ("int", "float", "bool")):
            raise DataError(
                f"{where}: input column `{c}` must be numeric (numbers or fixed-size arrays of "
                f"numbers). Received: {ds.features[c]}"
            )


def _inner_dtype(feature: Any) -> str:
    inner = getattr(feature, "feature", None)
    return _inner_dtype(inner) if inner is not None else str(getattr(feature, "dtype", feature))


def _named_splits(loaded: Any, names: Mapping[str, str] | None, where: str) -> dict[str, Any]:
    """``{"train": ds, "valid": ds, ...}`` from a DatasetDict (or a lone Dataset as train)."""
    if not hasattr(loaded, "keys"):
        return {"train": loaded}
    mapping = (
        dict(names)
        if names is not None
        else {ours: theirs for theirs, ours in _SPLIT_NAMES.items() if theirs in loaded}
    )
    unknown = [theirs for theirs in mapping.values() if theirs not in loaded]
    if unknown:
        raise DataError(f"{where}: no split(s) {unknown}. Splits: {sorted(loaded.keys())}")
    if "train" not in mapping:
        raise DataError(
            f"{where}: no training split. Splits: {sorted(loaded.keys())}; name one with "
            "`splits: {train: <split>}`."
        )
    return {ours: loaded[theirs] for ours, theirs in mapping.items()}


def _classes(parts: Mapping[str, Any], target: str, where: str) -> tuple[list[Any], list[Any]]:
    """(label values as stored, class names): ClassLabel names, or the training labels."""
    feature = parts["train"].features[target]
    names = getattr(feature, "names", None)
    if names is not None:
        return list(range(len(names))), list(names)
    train = set(parts["train"].unique(target))
    for name, ds in parts.items():
        unseen = sorted(set(ds.unique(target)) - train, key=str)
        if unseen:
            raise DataError(
                f"{where}: the `{name}` split has label {unseen[0]!r} in column `{target}`, "
                f"which never occurs in the training split (training labels: {sorted(map(str, train))[:20]})."
            )
    values = sorted(train, key=lambda v: (type(v).__name__, v))
    return values, values


def _task(
    parts: Mapping[str, Any], x_cols: list[str], y_cols: list[str], task: str | None, where: str
) -> tuple[Task, list[Any] | None]:
    """The task the columns pose (by the target's type unless given), and the label values."""
    values: list[Any] | None
    feature = parts["train"].features[y_cols[0]]
    dtype = str(getattr(feature, "dtype", ""))
    task = task or ("regression" if "float" in dtype else "classification")
    first = np.asarray(parts["train"].with_format("numpy", columns=x_cols)[0][x_cols[0]])
    args: dict[str, Any] = (
        {"in_features": len(x_cols)} if first.ndim == 0 else {"in_features": int(first.shape[-1])}
    )
    task_obj: Task
    if task == "classification":
        if len(y_cols) != 1:
            raise DataError(f"{where}: classification needs one target column. Received: {y_cols}")
        values, names = _classes(parts, y_cols[0], where)
        task_obj = ClassificationTask(len(names), classes=names, model_args=args)
    elif task == "regression":
        values = None
        task_obj = RegressionTask(y_cols, model_args=args)
    else:
        raise DataError(
            f"{where}: `task` must be 'classification' or 'regression'. Received: {task!r}"
        )
    return task_obj, values


def from_hf(
    path: str | os.PathLike[str],
    *,
    inputs: str | Sequence[str],
    targets: str | Sequence[str],
    task: str | None = None,
    splits: Mapping[str, str] | None = None,
    split: Any = None,
    cache_dir: str | None = None,
) -> DataBundle:
    """A DataBundle over a local Hugging Face dataset, memory-mapped (Arrow), not copied.

    Args:
        path: a folder written by ``save_to_disk``, or local ``.parquet`` / ``.jsonl`` /
            ``.json`` / ``.csv`` files (a file or a folder of them; files whose names start
            with ``valid``/``validation``/``test`` are those splits).
        inputs: the input column(s): numbers (stacked into ``[N, F]`` features) or one
            column of fixed-shape arrays (images, token ids).
        targets: the target column(s): class labels (a ``ClassLabel``, ints or strings) or
            float values.
        task: ``"classification"`` or ``"regression"``; default: by the target's type.
        splits: our split -> the dataset's split, e.g. ``{train: train, valid: dev}``;
            default: ``train``, ``validation`` / ``valid``, ``test`` where present.
        split: a split spec (``make_splits``) for a dataset with only a training split;
            default: random, 20% validation.
        cache_dir: where ``datasets`` keeps the Arrow files made from data files.

    Raises:
        DataError: a missing path, split or column (listing those there are), a
            non-numeric input column, a validation/test label absent from training, or a
            file ``datasets`` cannot read.

    Example:
        >>> bundle = from_hf("reviews_arrow/", inputs=["f0", "f1"], targets="label")  # doctest: +SKIP
    """
    where = f"Hugging Face dataset `{path}`"
    path = Path(path)
    if not path.exists():
        raise DataError(f"{where}: not found.")
    x_cols = [inputs] if isinstance(inputs, str) else list(inputs)
    y_cols = [targets] if isinstance(targets, str) else list(targets)
    parts = _named_splits(_open(path, cache_dir, where), splits, where)
    for name, ds in parts.items():
        _check_columns(ds, [*x_cols, *y_cols], where, name)
        if len(ds) == 0:
            raise DataError(f"{where}: the `{name}` split is empty.")
    _numeric(parts["train"], x_cols, where)
    if set(parts) == {"train"}:
        train = parts["train"]
        made = make_splits(
            split, len(train), default={"name": "random", "valid": 0.2}, path=f"{where}.split"
        )
        parts = {k: train.select(idx.tolist()) for k, idx in made.items() if len(idx)}
    task_obj, values = _task(parts, x_cols, y_cols, task, where)
    data = {k: ArrowData(ds, x_cols, y_cols, classes=values) for k, ds in parts.items()}
    return DataBundle.from_splits(
        data,
        task=task_obj,
        info={"source": where, "inputs": x_cols, "targets": y_cols},
    )
