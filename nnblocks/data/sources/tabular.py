"""Sources: pandas DataFrames and CSV files (tabular data).

Continuous columns become one float tensor ``x_num [N, F]`` (missing values filled,
normalised with training statistics); categorical columns become ``x_cat [N, C]`` int64
codes (0 = unknown bucket). A batch is ``(x_num, x_cat, y)`` with ``n_inputs=2`` when there
are categorical columns, else ``(x_num, y)`` — the call signature of the ``mlp`` model,
whose ``in_features`` and ``categories`` (cardinalities) come from ``task.model_args``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from nnblocks.data.bundle import DataBundle
from nnblocks.data.sources._common import (
    build_transforms,
    check_task,
    supervised_bundle,
    task_splits,
)
from nnblocks.data.transforms.base import fit_apply
from nnblocks.data.transforms.tabular import Categorify, Table
from nnblocks.errors import DataError

__all__ = ["from_dataframe", "from_csv"]


def _mixed_types(column: Any) -> tuple[Any, Any] | None:
    """For an object column mixing numbers and text: (a number, a text value); else None."""
    import pandas as pd

    values = column.dropna()
    if len(values) == 0:
        return None
    numeric = pd.to_numeric(values, errors="coerce")
    ok = numeric.notna()
    if ok.all() or not ok.any():
        return None
    return values[ok].iloc[0], values[~ok].iloc[0]


def _infer_columns(
    df: Any,
    targets: list[str],
    cat_names: Sequence[str] | None,
    cont_names: Sequence[str] | None,
    where: str,
) -> tuple[list[str], list[str]]:
    import pandas as pd

    rest = [c for c in df.columns if c not in targets]
    for given in (cat_names or []), (cont_names or []):
        missing = [c for c in given if c not in df.columns]
        if missing:
            raise DataError(f"{where}: column(s) {missing} not found. Columns: {list(df.columns)}")
    if cat_names is None and cont_names is None:
        cats = [
            c
            for c in rest
            if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])
        ]
        conts = [c for c in rest if c not in cats]
    elif cat_names is None:
        conts = list(cont_names or [])
        cats = [c for c in rest if c not in conts]
    else:
        cats = list(cat_names)
        conts = list(cont_names) if cont_names is not None else [c for c in rest if c not in cats]
    explicit = set(cat_names or [])
    for c in cats:
        if c in explicit:
            continue  # the user said it is categorical: mixed values are categories
        mixed = _mixed_types(df[c])
        if mixed is not None:
            raise DataError(
                f"{where}: column `{c}` mixes numbers and text (e.g. {mixed[0]!r} and {mixed[1]!r}). "
                f"Fix the values, or declare it categorical with cat_names=[..., {c!r}]."
            )
    for c in conts:
        if not pd.api.types.is_numeric_dtype(df[c]):
            mixed = _mixed_types(df[c])
            detail = f" (e.g. {mixed[0]!r} and {mixed[1]!r})" if mixed else ""
            raise DataError(
                f"{where}: continuous column `{c}` holds non-numeric values{detail}. "
                "Fix the values or list the column in cat_names."
            )
    return cats, conts


def from_dataframe(
    df: Any,
    target: str | Sequence[str],
    *,
    task: str | None = None,
    cat_names: Sequence[str] | None = None,
    cont_names: Sequence[str] | None = None,
    split: Any = None,
    fill_missing: Any = "fill_missing",
    categorify: Any = "categorify",
    normalize: Any = "normalize",
    normalize_target: bool = True,
    label_delim: str | None = None,
    where: str = "DataFrame",
) -> DataBundle:
    """A DataBundle from a pandas DataFrame.

    Args:
        df: the table, one row per example.
        target: the target column, or several (regression with several targets;
            multilabel with one 0/1 column per label).
        task: ``"classification"``, ``"regression"`` or ``"multilabel"``; default:
            regression for a float target column, multilabel for several 0/1 columns or a
            ``label_delim``, else classification.
        cat_names: categorical columns (values are categories even if numbers).
        cont_names: continuous columns. Default: the other columns, numeric ones
            continuous, the rest categorical.
        split: a split spec (``make_splits``); ``{"name": "column", "column": "fold"}``
            splits by a column. Default: stratified (classification) or random, 20% valid.
        fill_missing: transform spec filling missing values (train medians); None: none.
        categorify: transform spec for categorical codes (unknown bucket 0).
        normalize: transform spec for the continuous columns (train statistics); None: none.
        normalize_target: normalise regression targets (metrics stay in original units).
        label_delim: multilabel targets in one column, labels separated by this string.
        where: the data's name in messages (a CSV path).

    Raises:
        DataError: a missing target column; a column mixing numbers and text; missing
            target values; an empty split; a validation/test label absent from training.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"a": range(20), "c": ["x", "y"] * 10, "y": [0, 1] * 10})
        >>> from_dataframe(df, "y").task.model_args
        {'num_classes': 2, 'in_features': 1, 'categories': [3]}
    """
    targets = _check_frame(df, target, where)
    split_column = split.get("column") if isinstance(split, dict) else None
    body = df.drop(columns=[split_column] if split_column in df.columns else [])
    cats, conts = _infer_columns(body, targets, cat_names, cont_names, where)
    task = check_task(task or _infer_task(df, targets, label_delim), where=where)
    target_values, target_names = _targets(df, targets, task, label_delim, where)
    columns = {c: df[c].tolist() for c in df.columns}
    splits = task_splits(
        split, len(df), task=task, labels=target_values, where=where, columns=columns
    )
    xs, model_args, fitted, (cont_out, cat_out) = _encode_columns(
        body, splits, cats, conts, fill_missing=fill_missing, categorify=categorify, where=where
    )
    bundle = supervised_bundle(  # the shared steps: targets, normalisation (train statistics)
        xs,
        target_values,
        task=task,
        split=splits,
        normalize=normalize,
        target_names=target_names,
        normalize_target=normalize_target,
        input_kind="table",
        render_input=_table_renderer(cont_out, cat_out, fitted),
        model_args=model_args,
        input_names=["x_num", "x_cat"][: len(xs)],
        where=where,
        info={"cat_names": cat_out, "cont_names": cont_out, "target": targets},
    )
    bundle.transforms.update(fitted)
    return bundle


def _check_frame(df: Any, target: str | Sequence[str], where: str) -> list[str]:
    """The target columns, after checking ``df`` is a non-empty DataFrame that has them."""
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{where}: expected a pandas DataFrame. Received: {type(df).__name__}")
    targets = [target] if isinstance(target, str) else list(target)
    missing = [t for t in targets if t not in df.columns]
    if missing:
        raise DataError(
            f"{where}: target column(s) {missing} not found. Columns: {list(df.columns)}"
        )
    if len(df) == 0:
        raise DataError(f"{where}: the table has no rows.")
    return targets


def _encode_columns(
    body: Any,
    splits: Any,
    cats: list[str],
    conts: list[str],
    *,
    fill_missing: Any,
    categorify: Any,
    where: str,
) -> tuple[list[torch.Tensor], dict[str, Any], dict[str, Any], tuple[list[str], list[str]]]:
    """Fill missing values and encode categories with training statistics, per split.

    Returns:
        ``([x_num [N, F], x_cat [N, C]?], model_args, fitted transforms by role,
        (continuous names, categorical names))`` — rows in the table's order.
    """
    table = Table(body.reset_index(drop=True), cats, conts)
    parts: dict[str, Any] = {
        n: Table(table.df.iloc[idx.numpy()], cats, conts) if len(idx) else None
        for n, idx in splits.items()
    }
    fitted: dict[str, Any] = {}
    for role, spec in (("fill_missing", fill_missing), ("categorify", categorify)):
        for t in build_transforms(spec, path=f"{where}.{role}"):
            parts = fit_apply(t, parts)
            fitted[role] = t
    if cats and not isinstance(fitted.get("categorify"), Categorify):
        raise DataError(
            f"{where}: categorical columns {cats} need a `categorify` transform to become codes."
        )
    first = next(p for p in parts.values() if p is not None)
    cont_out, cat_out = list(first.cont_names), list(first.cat_names)
    n = len(body)
    x_num = torch.zeros(n, len(cont_out), dtype=torch.float32)
    x_cat = torch.zeros(n, len(cat_out), dtype=torch.long)
    for name, idx in splits.items():
        part = parts[name]
        if part is None:
            continue
        if cont_out:
            x_num[idx] = torch.tensor(part.df[cont_out].to_numpy(dtype="float32"))
        if cat_out:
            x_cat[idx] = torch.tensor(part.df[cat_out].to_numpy(dtype="int64"))
    model_args: dict[str, Any] = {"in_features": len(cont_out)}
    xs: list[torch.Tensor] = [x_num]
    if cat_out:
        model_args["categories"] = fitted["categorify"].cardinalities
        xs.append(x_cat)
    return xs, model_args, fitted, (cont_out, cat_out)


def _infer_task(df: Any, targets: list[str], label_delim: str | None) -> str:
    import pandas as pd

    if label_delim is not None:
        return "multilabel"
    if len(targets) > 1:
        values = df[targets]
        binary = all(set(values[c].dropna().unique()) <= {0, 1} for c in targets)
        return "multilabel" if binary else "regression"
    col = df[targets[0]]
    return "regression" if pd.api.types.is_float_dtype(col) else "classification"


def _targets(
    df: Any, targets: list[str], task: str, label_delim: str | None, where: str
) -> tuple[Any, list[str]]:
    import pandas as pd

    values = df[targets]
    if values.isna().any().any():
        col = values.columns[values.isna().any()][0]
        rows = values.index[values[col].isna()].tolist()[:5]
        raise DataError(
            f"{where}: target column `{col}` has missing values (rows {rows}). Drop or fill those rows."
        )
    if task == "classification":
        if len(targets) != 1:
            raise DataError(f"{where}: classification needs one target column. Received: {targets}")
        mixed = _mixed_types(values[targets[0]]) if values[targets[0]].dtype == object else None
        if mixed is not None:
            raise DataError(
                f"{where}: target column `{targets[0]}` mixes numbers and text (e.g. {mixed[0]!r} and {mixed[1]!r})."
            )
        return values[targets[0]].tolist(), targets
    if task == "multilabel" and label_delim is not None:
        if len(targets) != 1:
            raise DataError(
                f"{where}: `label_delim` needs exactly one target column. Received: {targets}"
            )
        sets = [set(filter(None, str(v).split(label_delim))) for v in values[targets[0]]]
        names = sorted(set().union(*sets))
        y = torch.tensor([[float(n in s) for n in names] for s in sets])
        return y, names
    for c in targets:
        if not pd.api.types.is_numeric_dtype(values[c]):
            mixed = _mixed_types(values[c])
            detail = f" (e.g. {mixed[0]!r} and {mixed[1]!r})" if mixed else ""
            raise DataError(f"{where}: {task} target column `{c}` must be numeric{detail}.")
    return torch.tensor(values.to_numpy(dtype="float32")), targets


def _table_renderer(conts: list[str], cats: list[str], fitted: dict[str, Any]) -> Any:
    categories: dict[str, list[Any]] = fitted["categorify"].categories if cats else {}

    def render(inputs: Sequence[torch.Tensor]) -> str:
        shown = [f"{n}={v:.3g}" for n, v in zip(conts, inputs[0].tolist())]
        if cats and len(inputs) > 1:
            for n, code in zip(cats, inputs[1].tolist()):
                known = categories.get(n, [])
                shown.append(f"{n}={known[code - 1] if 0 < code <= len(known) else '#unk#'}")
        return ", ".join(shown)

    return render


def from_csv(
    path: str | Path,
    target: str | Sequence[str],
    *,
    read_csv: dict[str, Any] | None = None,
    **options: Any,
) -> DataBundle:
    """A DataBundle from a CSV file (``from_dataframe`` on ``pandas.read_csv(path)``).

    Args:
        path: the CSV file.
        target: the target column(s).
        read_csv: extra keyword arguments of ``pandas.read_csv`` (``sep``, ``na_values``...).
        **options: the options of ``from_dataframe``.

    Raises:
        DataError: the file is missing or unreadable (naming it), or any error of
            ``from_dataframe`` (messages name the file).

    Example:
        >>> bundle = from_csv("houses.csv", target="price")  # doctest: +SKIP
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"CSV file `{path}` not found.")
    try:
        df = pd.read_csv(path, **(read_csv or {}))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"cannot read CSV file `{path}`: {exc}") from exc
    return from_dataframe(df, target, where=f"CSV file `{path}`", **options)
