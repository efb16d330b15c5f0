"""Tabular preprocessing on pandas tables: missing-value filling and categorical codes.

Both work on a ``Table`` (a DataFrame plus the names of its categorical and continuous
columns), learn from the training split only (``fit``) and return a new ``Table``.
pandas is imported by the caller that made the DataFrame; nothing here imports it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from nnblocks.data.transforms.base import Transform
from nnblocks.errors import DataError
from nnblocks.registry import register

__all__ = ["Table", "FillMissing", "Categorify"]


@dataclasses.dataclass
class Table:
    """A DataFrame with its categorical and continuous column names."""

    df: Any  # pandas.DataFrame
    cat_names: list[str]
    cont_names: list[str]

    def replace(self, **changes: Any) -> Table:
        return dataclasses.replace(self, **changes)


def _check_table(x: Any, name: str) -> Table:
    if not isinstance(x, Table):
        raise DataError(
            f"transform `{name}` expects a Table (DataFrame + column names). Received: {type(x).__name__}"
        )
    return x


@register("transform", "fill_missing")
class FillMissing(Transform):
    """Fill missing values with statistics of the training split.

    Continuous columns get the training median (or mean, or a constant); with
    ``add_indicator`` each continuous column that had gaps in training also gets a 0/1
    column ``<name>_na``, so the model can tell a filled value from a real one. Missing
    categories become the category ``fill_category`` (a category of its own when training
    has it, the unknown bucket otherwise).

    Args:
        strategy: ``"median"``, ``"mean"`` or ``"constant"``.
        fill_value: the value for ``"constant"``.
        add_indicator: add ``<name>_na`` columns.
        fill_category: what missing categorical values become.

    Raises:
        DataError: an unknown strategy, or a continuous column with no value at all in the
            training split.

    Example:
        >>> import pandas as pd
        >>> t = Table(pd.DataFrame({"a": [1.0, None, 3.0]}), [], ["a"])
        >>> FillMissing().fit(t)(t).df["a"].tolist()
        [1.0, 2.0, 3.0]
    """

    name = "fill_missing"

    def __init__(
        self,
        strategy: str = "median",
        fill_value: float = 0.0,
        add_indicator: bool = True,
        fill_category: str = "#na#",
    ):
        super().__init__()
        if strategy not in ("median", "mean", "constant"):
            raise DataError(
                "`strategy` of transform `fill_missing` must be 'median', 'mean' or 'constant'. "
                f"Received: strategy={strategy!r}"
            )
        self.strategy = strategy
        self.fill_value = fill_value
        self.add_indicator = add_indicator
        self.fill_category = fill_category
        self.fills: dict[str, float] = {}
        self.indicators: list[str] = []

    def fit(self, table: Any) -> FillMissing:
        table = _check_table(table, self.name)
        df = table.df
        self.fills, self.indicators = {}, []
        for col in table.cont_names:
            values = df[col]
            if self.strategy == "constant":
                fill = float(self.fill_value)
            else:
                if values.notna().sum() == 0:
                    raise DataError(
                        f"transform `fill_missing`: column `{col}` has no value in the training split, "
                        f"so there is no {self.strategy} to fill it with."
                    )
                fill = float(values.median() if self.strategy == "median" else values.mean())
            self.fills[col] = fill
            if self.add_indicator and bool(values.isna().any()):
                self.indicators.append(col)
        self.fitted = True
        return self

    def __call__(self, table: Any) -> Table:
        self._check_fitted()
        table = _check_table(table, self.name)
        df = table.df.copy()
        added = []
        for col in self.indicators:
            df[f"{col}_na"] = df[col].isna().astype("float32")
            added.append(f"{col}_na")
        for col, fill in self.fills.items():
            df[col] = df[col].fillna(fill)
        for col in table.cat_names:
            if df[col].isna().any():
                df[col] = df[col].astype(object).where(df[col].notna(), self.fill_category)
        return table.replace(df=df, cont_names=list(table.cont_names) + added)

    def options(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "fill_value": self.fill_value,
            "add_indicator": self.add_indicator,
            "fill_category": self.fill_category,
        }

    def state(self) -> dict[str, Any]:
        return {"fills": dict(self.fills), "indicators": list(self.indicators)}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.fills = {k: float(v) for k, v in state["fills"].items()}
        self.indicators = list(state["indicators"])
        self.fitted = True


@register("transform", "categorify")
class Categorify(Transform):
    """Replace categories by integer codes learned from the training split.

    Code 0 is the *unknown bucket*: a category never seen in training (or seen fewer than
    ``min_freq`` times) maps there, so validation and test rows with new categories still
    have a code the model knows. Known categories get codes 1.. in sorted order.

    Args:
        min_freq: categories rarer than this in training go to the unknown bucket.

    Returns (when called):
        the Table with each categorical column replaced by its int64 codes.
        ``cardinalities`` then lists, per categorical column, the number of codes
        (known categories + 1), which sizes the model's embeddings.

    Example:
        >>> import pandas as pd
        >>> t = Table(pd.DataFrame({"c": ["a", "b", "a"]}), ["c"], [])
        >>> cat = Categorify().fit(t)
        >>> cat(Table(pd.DataFrame({"c": ["b", "z"]}), ["c"], [])).df["c"].tolist()
        [2, 0]
    """

    name = "categorify"

    def __init__(self, min_freq: int = 1):
        super().__init__()
        self.min_freq = min_freq
        self.categories: dict[str, list[Any]] = {}

    def fit(self, table: Any) -> Categorify:
        table = _check_table(table, self.name)
        self.categories = {}
        for col in table.cat_names:
            counts = table.df[col].dropna().value_counts()
            kept = [c for c, k in counts.items() if k >= self.min_freq]
            self.categories[col] = sorted(kept, key=lambda v: (str(type(v)), v))
        self.fitted = True
        return self

    @property
    def cardinalities(self) -> list[int]:
        return [len(c) + 1 for c in self.categories.values()]

    def __call__(self, table: Any) -> Table:
        import pandas as pd

        self._check_fitted()
        table = _check_table(table, self.name)
        df = table.df.copy()
        for col, cats in self.categories.items():
            # get_indexer gives -1 for values outside `cats` (and missing): +1 moves them to bucket 0
            codes = (
                pd.Index(cats, dtype=object).get_indexer(df[col].astype(object)).astype("int64") + 1
            )
            df[col] = codes
        return table.replace(df=df)

    def options(self) -> dict[str, Any]:
        return {"min_freq": self.min_freq}

    def state(self) -> dict[str, Any]:
        return {"categories": {k: [_plain(v) for v in cats] for k, cats in self.categories.items()}}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.categories = {k: list(v) for k, v in state["categories"].items()}
        self.fitted = True


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else value
