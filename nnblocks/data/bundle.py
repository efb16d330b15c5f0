"""`DataBundle`: what a dataset part returns — the splits and the task."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nnblocks.data.show import show_batch
from nnblocks.data.splits import check_leakage
from nnblocks.data.tasks import Task
from nnblocks.errors import DataError

__all__ = ["DataBundle", "DATA_STATE_FILE", "load_data_state"]

DATA_STATE_FILE = "data.json"


@dataclasses.dataclass
class DataBundle:
    """The splits of a dataset and the task they pose.

    Attributes:
        train: the training split (``TensorData``, ``AugmentedData`` or any torch Dataset).
        valid: the validation split, or None.
        test: the test split, or None.
        task: the ``Task`` (loss, metrics, model_args, evaluate, decode_example).
        extra: further named splits, e.g. ``{"long": ...}`` for length generalisation.
        tokenizers: the fitted tokenizers by role (``{"src": ..., "tgt": ...}``).
        transforms: the fitted preprocessing by role (``{"x": Normalize, ...}``).
        info: plain facts about the data (source, sizes, options) for reports.

    Example:
        >>> import torch
        >>> from nnblocks.data import TensorData, ClassificationTask
        >>> data = TensorData(torch.randn(8, 2), torch.zeros(8, dtype=torch.long))
        >>> bundle = DataBundle(train=data, valid=None, task=ClassificationTask(2))
        >>> bundle.sizes()
        {'train': 8}
    """

    train: Any
    valid: Any
    task: Task
    test: Any = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    tokenizers: dict[str, Any] = dataclasses.field(default_factory=dict)
    transforms: dict[str, Any] = dataclasses.field(default_factory=dict)
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.train is None or len(self.train) == 0:
            raise DataError("a DataBundle needs a non-empty `train` split.")
        for name, data in self.splits().items():
            if len(data) == 0:
                raise DataError(
                    f"the `{name}` split of this dataset is empty; pass None for no `{name}` split."
                )
        self.task.bind(self.splits())

    @classmethod
    def from_splits(cls, splits: Mapping[str, Any], *, task: Task, **fields: Any) -> DataBundle:
        """A bundle from data by split name, as a source makes it: ``train``, ``valid`` and
        ``test`` (missing or None: no such split), every other name an ``extra`` split.

        Args:
            splits: ``{name: data or None}``.
            task: the task the data poses.
            **fields: the other fields (``tokenizers``, ``transforms``, ``info``).

        Raises:
            DataError: no training data, or an empty split.
        """
        rest = {k: v for k, v in splits.items() if v is not None}
        return cls(
            train=rest.pop("train", None),
            valid=rest.pop("valid", None),
            test=rest.pop("test", None),
            task=task,
            extra=rest,
            **fields,
        )

    def splits(self) -> dict[str, Any]:
        """Every split that exists, by name (train, valid, test, then the extra ones)."""
        out = {"train": self.train, "valid": self.valid, "test": self.test, **self.extra}
        return {k: v for k, v in out.items() if v is not None}

    def split(self, name: str) -> Any:
        """One split by name.

        Raises:
            DataError: no such split (naming the ones there are).
        """
        splits = self.splits()
        if name not in splits:
            raise DataError(f"this dataset has no `{name}` split. Splits: {sorted(splits)}")
        return splits[name]

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.splits().items()}

    @property
    def model_args(self) -> dict[str, Any]:
        """The task's model defaults (``bundle.task.model_args``)."""
        return self.task.model_args

    def evaluate(self, model: Any, split: str = "test", **options: Any) -> dict[str, float]:
        """``task.evaluate(model, split)``: task-level metrics after training."""
        return self.task.evaluate(model, split, **options)

    def show_batch(self, split: str = "train", n: int = 8, path: str | Path | None = None) -> Any:
        """Show ``n`` decoded examples of a split (see ``nnblocks.data.show_batch``)."""
        return show_batch(self, split=split, n=n, path=path)

    def check_leakage(self, column: int = 0, *, what: str = "input") -> None:
        """Raise DataError if a row of ``column`` in any other split also occurs in training.

        For seq2seq (``column=0``, the source) this is the check that no test sentence was
        seen in training. Only splits held as tensors are compared.
        """
        keys: Mapping[str, Any] = {
            name: data.tensors[column]
            for name, data in self.splits().items()
            if hasattr(data, "tensors")
        }
        check_leakage(keys, what=what)

    def state(self) -> dict[str, Any]:
        """Plain data to save beside a trained model: task, tokenizers, fitted transforms."""
        return {
            "task": self.task.describe(),
            "tokenizers": {k: t.to_dict() for k, t in self.tokenizers.items()},
            "transforms": {k: t.to_dict() for k, t in self.transforms.items()},
            "info": dict(self.info),
        }

    def save_state(self, folder: str | Path) -> Path:
        """Write ``state()`` as ``folder/data.json`` (atomically), beside a saved model.

        ``nnblocks.save(model, folder)`` stores the architecture and weights; this stores
        what turns raw text or tables into the model's inputs (tokenizers, normalisation
        statistics, categories), so ``load_data_state(folder)`` can prepare new inputs.
        """
        import json

        from nnblocks.io.atomic import atomic_write_text

        path = Path(folder) / DATA_STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(self.state(), ensure_ascii=False, default=str))
        return path

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes().items())
        return f"DataBundle({self.task.name}: {sizes}; model_args={self.task.model_args})"


def load_data_state(folder: str | Path) -> dict[str, Any]:
    """Read what ``DataBundle.save_state(folder)`` wrote, with live tokenizers and transforms.

    Args:
        folder: the folder holding ``data.json`` (or the file itself).

    Returns:
        ``{"task": dict, "tokenizers": {role: Tokenizer}, "transforms": {role: Transform},
        "info": dict}``.

    Raises:
        DataError: the file is missing or not valid data state (naming the file).
    """
    import json

    from nnblocks.data.tokenizers.base import tokenizer_from_dict
    from nnblocks.data.transforms.base import transform_from_dict

    path = Path(folder)
    if path.is_dir() or path.name != DATA_STATE_FILE:
        path = path / DATA_STATE_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {
            "task": raw["task"],
            "tokenizers": {k: tokenizer_from_dict(v) for k, v in raw["tokenizers"].items()},
            "transforms": {k: transform_from_dict(v) for k, v in raw["transforms"].items()},
            "info": raw.get("info", {}),
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"cannot read data state `{path}`: {exc}") from exc
