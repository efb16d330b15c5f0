"""Shared steps of the sources: label encoding, transforms, splits -> a DataBundle."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from nnblocks.data.bundle import DataBundle
from nnblocks.data.splits import Splits, make_splits
from nnblocks.data.tasks import ClassificationTask, MultiLabelTask, RegressionTask, Task
from nnblocks.data.tensors import TensorData
from nnblocks.data.transforms.augmented import AugmentedData
from nnblocks.data.transforms.base import Transform, fit_apply
from nnblocks.data.transforms.normalize import Normalize
from nnblocks.errors import DataError

__all__ = [
    "TASKS",
    "task_splits",
    "encode_labels",
    "build_transforms",
    "supervised_bundle",
    "split_tensors",
]

TASKS = ("classification", "multilabel", "regression")


def check_task(task: str, *, where: str) -> str:
    if task not in TASKS:
        raise DataError(f"{where}: unknown task {task!r}. Expected one of {', '.join(TASKS)}.")
    return task


def task_splits(
    split: Any, n: int, *, task: str, labels: Sequence[Any], where: str, **context: Any
) -> Splits:
    """``make_splits`` with a supervised task's default: 20% validation, stratified by
    label for classification, random otherwise.

    Args:
        split: the user's split spec (None: the default).
        n: the number of items.
        task: ``"classification"``, ``"regression"`` or ``"multilabel"``.
        labels: one target per item (used to stratify classification).
        where: the data's name for messages.
        **context: what other split specs need (``groups``, ``columns``).
    """
    classify = task == "classification"
    return make_splits(
        split,
        n,
        labels=labels if classify else None,
        default={"name": "stratified" if classify else "random", "valid": 0.2},
        path=f"{where}.split",
        **context,
    )


def encode_labels(
    labels: Sequence[Any], splits: Splits, *, where: str, classes: Sequence[Any] | None = None
) -> tuple[torch.Tensor, list[Any]]:
    """Map class labels to ids 0..C-1, with the classes seen in the training split.

    A label of a validation or test item that never occurs in training is an error here,
    before training: a model cannot learn a class it never sees, and an accuracy that
    silently counts it as wrong hides the problem.

    Args:
        labels: one label per item.
        splits: the splits (the classes come from ``splits.train``).
        where: the data's name for messages (file, column).
        classes: the class list to use (index = id); default: sorted training labels.

    Returns:
        ``(ids [N] long, classes)``.

    Raises:
        DataError: a label outside the training classes (naming split, label and count).
    """
    values = [v.item() if isinstance(v, torch.Tensor) else v for v in labels]
    train_labels = {values[i] for i in splits.train.tolist()}
    if classes is None:
        try:
            classes = sorted(train_labels)
        except TypeError:  # mixed types: order by text, still deterministic
            classes = sorted(train_labels, key=lambda v: (type(v).__name__, str(v)))
    index = {c: i for i, c in enumerate(classes)}
    outside = [v for v in train_labels if v not in index]
    if outside:
        raise DataError(
            f"{where}: label {outside[0]!r} of the training split is not among the given classes "
            f"{list(classes)[:20]}."
        )
    for name, idx in splits.items():
        unseen = [
            values[i]
            for i in idx.tolist()
            if values[i] not in index or values[i] not in train_labels
        ]
        if unseen:
            example = unseen[0]
            raise DataError(
                f"{where}: the `{name}` split has {len(unseen)} item(s) with label {example!r}, which "
                f"never occurs in the training split (training labels: {sorted(map(str, train_labels))[:20]}). "
                "Remove those items, or split so that every class is in training (a stratified split)."
            )
    ids = torch.tensor([index.get(v, -1) for v in values], dtype=torch.long)
    return ids, list(classes)


def build_transforms(specs: Any, *, path: str) -> list[Transform]:
    """Build a list of transform specs (names, dicts or Transform objects)."""
    from nnblocks.registry import build

    if specs is None:
        return []
    if isinstance(specs, (str, Mapping, Transform)):
        specs = [specs]
    out = []
    for i, spec in enumerate(specs):
        t = spec if isinstance(spec, Transform) else build(spec, "transform", at=f"{path}.{i}")
        out.append(t)
    return out


def split_tensors(tensors: Sequence[torch.Tensor], splits: Splits) -> dict[str, list[torch.Tensor]]:
    """Each split's rows of every tensor (None for an empty valid/test split)."""
    out: dict[str, Any] = {}
    for name, idx in splits.items():
        out[name] = [t[idx] for t in tensors] if len(idx) else None
    return out


def supervised_bundle(
    x: torch.Tensor | Sequence[torch.Tensor],
    targets: Sequence[Any] | torch.Tensor,
    *,
    task: str,
    split: Any = None,
    normalize: Any = "normalize",
    augment: Any = None,
    classes: Sequence[Any] | None = None,
    target_names: Sequence[str] | None = None,
    normalize_target: bool = True,
    input_kind: str = "vector",
    render_input: Any = None,
    model_args: Mapping[str, Any] | None = None,
    input_names: Sequence[str] | None = None,
    where: str = "data",
    groups: Sequence[Any] | None = None,
    info: Mapping[str, Any] | None = None,
) -> DataBundle:
    """Inputs and targets -> split, encoded, normalised (train statistics), augmented (train).

    ``x`` is one tensor or several (e.g. numeric and categorical columns: only the first,
    a float tensor, is normalised; augmentation applies to the first).
    """
    check_task(task, where=where)
    xs = [x] if isinstance(x, torch.Tensor) else list(x)
    n = len(xs[0])
    labels: list[Any] = targets.tolist() if isinstance(targets, torch.Tensor) else list(targets)
    splits = task_splits(split, n, task=task, labels=labels, where=where, groups=groups)
    y, task_obj, transforms = _encode_targets(
        targets,
        labels,
        splits,
        task=task,
        classes=classes,
        target_names=target_names,
        normalize_target=normalize_target,
        task_options={
            "model_args": model_args,
            "input_kind": input_kind,
            "render_input": render_input,
        },
        where=where,
    )
    # Normalise the first input with statistics of the training rows only.
    norm = (
        build_transforms(normalize, path=f"{where}.normalize") if xs[0].is_floating_point() else []
    )
    for i, t in enumerate(norm):
        parts = fit_apply(t, {k: xs[0][idx] if len(idx) else None for k, idx in splits.items()})
        xs[0] = _reassemble(parts, splits, xs[0])
        transforms[f"x{i}" if len(norm) > 1 else "x"] = t
    aug = build_transforms(augment, path=f"{where}.augment")
    per_split = split_tensors([*xs, y], splits)
    names = [*(input_names or [f"x{i}" for i in range(len(xs))]), "y"]
    made: dict[str, Any] = {}
    for name, tensors in per_split.items():
        if tensors is None:
            made[name] = None
        elif name == "train" and aug:
            made[name] = AugmentedData(*tensors, augment=aug, n_inputs=len(xs), names=names)
        else:
            made[name] = TensorData(*tensors, n_inputs=len(xs), names=names)
    return DataBundle.from_splits(
        made,
        task=task_obj,
        transforms=transforms,
        info={"source": where, "sizes": splits.sizes(), **(info or {})},
    )


def _encode_targets(
    targets: Any,
    labels: list[Any],
    splits: Splits,
    *,
    task: str,
    classes: Sequence[Any] | None,
    target_names: Sequence[str] | None,
    normalize_target: bool,
    task_options: Mapping[str, Any],
    where: str,
) -> tuple[torch.Tensor, Task, dict[str, Transform]]:
    """Targets as tensors (class ids, 0/1 labels, normalised values) and the task they pose."""
    task_obj: Task
    transforms: dict[str, Transform] = {}
    if task == "classification":
        y, classes = encode_labels(labels, splits, where=where, classes=classes)
        task_obj = ClassificationTask(len(classes), classes=classes, **task_options)
    elif task == "multilabel":
        y = torch.as_tensor(targets, dtype=torch.float32)
        if y.dim() != 2:
            raise DataError(
                f"{where}: multilabel targets must be [N, labels] 0/1. Received shape {tuple(y.shape)}"
            )
        names = (
            list(target_names) if target_names is not None else [str(i) for i in range(y.shape[1])]
        )
        task_obj = MultiLabelTask(names, **task_options)
    else:
        y = torch.as_tensor(targets, dtype=torch.float32)
        y = y[:, None] if y.dim() == 1 else y  # [N, K]
        scaler = None
        if normalize_target:
            scaler = Normalize()
            parts = fit_apply(
                scaler, {k: y[idx] if len(idx) else None for k, idx in splits.items()}
            )
            y = _reassemble(parts, splits, y)
            transforms["y"] = scaler
        names = (
            list(target_names) if target_names is not None else [f"y{i}" for i in range(y.shape[1])]
        )
        task_obj = RegressionTask(names, target_scaler=scaler, **task_options)
    return y, task_obj, transforms


def _reassemble(parts: Mapping[str, Any], splits: Splits, like: torch.Tensor) -> torch.Tensor:
    """Put per-split transformed rows back at their original row positions."""
    first = next(v for v in parts.values() if v is not None)
    out = torch.empty((len(like), *first.shape[1:]), dtype=first.dtype)
    for name, idx in splits.items():
        if parts.get(name) is not None:
            out[idx] = parts[name]
    return out
