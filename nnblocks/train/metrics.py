"""Metrics for the Learner: torchmetrics by name, any torchmetrics ``Metric``, or a function.

A name (``"accuracy"``, ``"f1"``, ``"mse"``...) maps to a torchmetrics class whose task is
inferred from the first batch it sees:

===============================  ===========================  ===========================
model output                     targets                      task
===============================  ===========================  ===========================
``[B, C]`` float                 ``[B]`` integer              multiclass, C classes
``[B, T, C]`` float              ``[B, T]`` integer           multiclass per position
``[B]`` or ``[B, 1]`` float      ``[B]`` 0/1                  binary (logits or probs)
``[B, C]`` float                 ``[B, C]`` 0/1               multilabel, C labels
===============================  ===========================  ===========================

Options go in a dict spec: ``{"name": "accuracy", "ignore_index": 0}``. A plain function
``fn(output, *targets) -> scalar tensor`` is averaged over samples. Every metric accumulates
on the device of the batch and is read once per epoch, so updating it never waits for the
device; across processes the states are summed before reading.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from nnblocks.errors import DataError, TrainingError

__all__ = ["METRIC_NAMES", "MetricSet", "make_metric", "infer_task"]

# name -> (torchmetrics class path, needs a classification task, default options)
METRIC_NAMES: dict[str, tuple[str, bool, dict[str, Any]]] = {
    "accuracy": ("torchmetrics.Accuracy", True, {}),
    "f1": ("torchmetrics.F1Score", True, {"average": "macro"}),
    "precision": ("torchmetrics.Precision", True, {"average": "macro"}),
    "recall": ("torchmetrics.Recall", True, {"average": "macro"}),
    "auroc": ("torchmetrics.AUROC", True, {}),
    "mse": ("torchmetrics.MeanSquaredError", False, {}),
    "rmse": ("torchmetrics.MeanSquaredError", False, {"squared": False}),
    "mae": ("torchmetrics.MeanAbsoluteError", False, {}),
    "r2": ("torchmetrics.R2Score", False, {}),
    "perplexity": ("torchmetrics.text.Perplexity", False, {}),
}


def infer_task(output: torch.Tensor, target: torch.Tensor, *, where: str) -> tuple[str, int | None]:
    """``(task, classes)`` of a classification metric from an output and its target.

    Raises:
        DataError: shapes that fit no task (naming ``where``, the shapes and dtypes).
    """
    o, t = output.shape, target.shape
    integer = not target.is_floating_point()
    if output.dim() == target.dim() + 1 and o[:-1] == t and integer and o[-1] > 1:
        return "multiclass", int(o[-1])
    if o == t or (output.dim() == 2 and o[1] == 1 and o[:1] == t):
        if output.dim() >= 2 and o[-1] > 1:
            return "multilabel", int(o[-1])
        return "binary", None
    raise DataError(
        f"metric `{where}`: cannot tell the task from the model output {list(o)} "
        f"{str(output.dtype).replace('torch.', '')} and the targets {list(t)} "
        f"{str(target.dtype).replace('torch.', '')}. Expected [B, C] with integer targets [B] "
        "(multiclass), [B, T, C] with [B, T], [B] with [B] (binary) or [B, C] with [B, C] "
        "(multilabel); or pass a torchmetrics Metric configured yourself."
    )


def _import(path: str) -> Any:
    import importlib

    module, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module), attr)


class _Named:
    """A torchmetrics metric chosen by name, created on the first batch it sees."""

    def __init__(self, name: str, options: dict[str, Any], label: str):
        self.key = name
        self.name = label
        self.options = options
        self.metric: Any = None
        self.classify = METRIC_NAMES[name][1]
        self.move_classes = False  # [B, T, C] -> [B, C, T], the layout torchmetrics expects

    def _create(self, output: torch.Tensor, target: torch.Tensor) -> None:
        path, classify, defaults = METRIC_NAMES[self.key]
        options = {**defaults, **self.options}
        if classify and "task" not in options:
            task, n = infer_task(output, target, where=self.name)
            options["task"] = task
            if task == "multiclass":
                options.setdefault("num_classes", n)
                self.move_classes = output.dim() > 2
            elif task == "multilabel":
                options.setdefault("num_labels", n)
            if task == "binary":
                options.pop("average", None)  # binary metrics have a single average
        try:
            self.metric = _import(path)(**options).to(output.device)
        except (TypeError, ValueError) as exc:
            raise TrainingError(
                f"metric `{self.name}` could not be built with {options}: {exc}"
            ) from exc

    def update(self, output: torch.Tensor, targets: tuple[Any, ...]) -> None:
        target = targets[0]
        if self.metric is None:
            self._create(output, target)
        if self.move_classes:
            output = output.movedim(-1, 1)  # [B, T, C] -> [B, C, T]
        elif output.dim() == 2 and output.shape[1] == 1 and target.dim() == 1:
            output = output[:, 0]
        self.metric.update(output.detach(), target)

    def compute(self) -> float:
        return float(self.metric.compute()) if self.metric is not None else float("nan")

    def reset(self) -> None:
        if self.metric is not None:
            self.metric.reset()


class _Given:
    """A torchmetrics ``Metric`` object, used as is (moved to the batch's device)."""

    def __init__(self, metric: Any, label: str):
        self.metric = metric
        self.name = label
        self._device: torch.device | None = None

    def update(self, output: torch.Tensor, targets: tuple[Any, ...]) -> None:
        if self._device != output.device:
            self.metric.to(output.device)
            self._device = output.device
        self.metric.update(output.detach(), *targets)

    def compute(self) -> float:
        return float(self.metric.compute())

    def reset(self) -> None:
        self.metric.reset()


class _Function:
    """A function ``fn(output, *targets) -> scalar``, averaged over samples on device."""

    def __init__(self, fn: Callable[..., Any], label: str):
        self.fn = fn
        self.name = label
        self.total: torch.Tensor | None = None
        self.count: torch.Tensor | None = None

    def update(self, output: torch.Tensor, targets: tuple[Any, ...]) -> None:
        value = torch.as_tensor(self.fn(output.detach(), *targets), device=output.device)
        n = output.shape[0] if output.dim() else 1
        if self.total is None:
            self.total = torch.zeros((), dtype=torch.float64, device=output.device)
            self.count = torch.zeros((), dtype=torch.float64, device=output.device)
        self.total += value.detach().double().mean() * n
        self.count += n  # type: ignore[operator,assignment]

    def compute(self) -> float:
        if self.total is None or self.count is None:
            return float("nan")
        pair = torch.stack([self.total, self.count])
        from nnblocks.train.distributed import all_reduce_sum

        pair = all_reduce_sum(pair)
        return float(pair[0] / pair[1])

    def reset(self) -> None:
        self.total = self.count = None


def make_metric(spec: Any, label: str | None = None) -> Any:
    """One metric from a name, a ``{"name": ..., **options}`` dict, a Metric or a function.

    Raises:
        TrainingError: an unknown name (listing the known ones) or an unusable object.
    """
    if isinstance(spec, str) or (isinstance(spec, Mapping) and "name" in spec):
        name = spec if isinstance(spec, str) else spec["name"]
        options = {} if isinstance(spec, str) else {k: v for k, v in spec.items() if k != "name"}
        key = name.lower()
        if key not in METRIC_NAMES:
            raise TrainingError(
                f"Received an unknown metric `{name}`. Known names: {', '.join(METRIC_NAMES)}; "
                "or pass a torchmetrics Metric or a function fn(output, *targets)."
            )
        return _Named(key, options, label or name)
    if hasattr(spec, "update") and hasattr(spec, "compute") and hasattr(spec, "reset"):
        return _Given(spec, label or type(spec).__name__.lower())
    if callable(spec):
        return _Function(spec, label or str(getattr(spec, "__name__", "metric")))
    raise TrainingError(
        "Received an invalid metric: expected a name, a dict spec, a torchmetrics Metric or a "
        f"function. Received: {type(spec).__name__} {spec!r:.60}"
    )


class MetricSet:
    """The metrics of one phase (validation, or training when asked): update, compute, reset.

    Args:
        specs: a list of metric specs, or a ``{label: spec}`` mapping.
    """

    def __init__(self, specs: Iterable[Any] | Mapping[str, Any] | None):
        if specs is None:
            self.metrics: list[Any] = []
        elif isinstance(specs, Mapping) and "name" not in specs:
            self.metrics = [make_metric(s, label) for label, s in specs.items()]
        elif isinstance(specs, (str, Mapping)) or not isinstance(specs, Iterable):
            self.metrics = [make_metric(specs)]
        else:
            self.metrics = [make_metric(s) for s in specs]
        names = [m.name for m in self.metrics]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise TrainingError(
                f"two metrics share the name(s) {sorted(dupes)}; pass a dict {{label: metric}}."
            )

    def __bool__(self) -> bool:
        return bool(self.metrics)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.metrics]

    def update(self, output: Any, targets: tuple[Any, ...]) -> None:
        for m in self.metrics:
            m.update(output, targets)

    def compute(self) -> dict[str, float]:
        return {m.name: m.compute() for m in self.metrics}

    def reset(self) -> None:
        for m in self.metrics:
            m.reset()
