"""Splits: which items train, which validate, which test — and a check that none leaks.

Every function returns a ``Splits`` of index tensors. Fractions are of the whole set
(``valid=0.1`` = 10% of all items); an int is a count. The training split is whatever is
left, unless given. ``make_splits(spec, ...)`` builds one from plain data, as a dataset's
``split=`` option does::

    {"name": "random", "valid": 0.1, "test": 0.1, "seed": 0}
    {"name": "stratified", "valid": 0.2}                 # class proportions kept
    {"name": "group", "valid": 0.1}                      # items of one group stay together
    {"name": "column", "column": "fold", "valid": "valid", "test": "test"}
    {"name": "indices", "valid": [3, 4], "test": [7]}
    {"name": "predicate", "valid": callable}             # item -> bool (Python only)
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import torch

from nnblocks.errors import DataError

Fraction = float | int


@dataclasses.dataclass(frozen=True)
class Splits:
    """Index tensors of the train, valid and test splits (``extra``: named further splits).

    An empty valid/test split means "none"; ``check`` enforces that no index is in two
    splits, every index is in range, and the splits that were asked for are not empty.
    """

    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    extra: Mapping[str, torch.Tensor] = dataclasses.field(default_factory=dict)

    def items(self) -> list[tuple[str, torch.Tensor]]:
        """``[(name, indices)]`` for every split, extra splits last."""
        return [
            ("train", self.train),
            ("valid", self.valid),
            ("test", self.test),
            *self.extra.items(),
        ]

    def sizes(self) -> dict[str, int]:
        return {name: len(idx) for name, idx in self.items()}

    def check(self, n: int | None = None, *, required: Iterable[str] = ("train",)) -> Splits:
        """Raise DataError on overlap, out-of-range indices or an empty required split."""
        for name in required:
            if len(dict(self.items())[name]) == 0:
                raise DataError(
                    f"the `{name}` split is empty (split sizes: {self.sizes()}). Give the dataset "
                    "more items or choose smaller valid/test fractions."
                )
        check_no_shared_items(self, n)
        return self


def _as_count(value: Fraction | None, n: int, name: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise DataError(
            f"split size `{name}` must be a fraction in [0, 1) or a count. Received: {value!r}"
        )
    if isinstance(value, float):
        if value >= 1:
            raise DataError(f"split fraction `{name}` must be below 1. Received: {value}")
        return int(round(value * n))
    return int(value)


def _requested(**sizes: Fraction | None) -> list[str]:
    return ["train"] + [k for k, v in sizes.items() if v]


def random_split(n: int, valid: Fraction = 0.1, test: Fraction = 0.0, *, seed: int = 0) -> Splits:
    """Shuffle ``range(n)`` with ``seed`` and cut it into train/valid/test.

    Raises:
        DataError: bad sizes, or a requested split that ends up empty.

    Example:
        >>> s = random_split(10, valid=0.2, test=0.2, seed=0)
        >>> s.sizes()
        {'train': 6, 'valid': 2, 'test': 2}
    """
    n_valid, n_test = _as_count(valid, n, "valid"), _as_count(test, n, "test")
    if n_valid + n_test > n:
        raise DataError(
            f"valid ({n_valid}) + test ({n_test}) items exceed the {n} items there are."
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    splits = Splits(
        train=order[n_valid + n_test :].sort().values,
        valid=order[:n_valid].sort().values,
        test=order[n_valid : n_valid + n_test].sort().values,
    )
    return splits.check(n, required=_requested(valid=valid, test=test))


def stratified_split(
    labels: Sequence[Hashable] | torch.Tensor,
    valid: Fraction = 0.1,
    test: Fraction = 0.0,
    *,
    seed: int = 0,
) -> Splits:
    """Like ``random_split`` but each class keeps its share in every split.

    Fractions apply per class (rounded); a class with a single item stays in training.

    Example:
        >>> s = stratified_split([0] * 8 + [1] * 2, valid=0.5, seed=0)
        >>> s.sizes()['valid']
        5
    """
    keys = labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
    if isinstance(valid, int) or isinstance(test, int):
        total = len(keys)
        valid = valid / total if isinstance(valid, int) and not isinstance(valid, bool) else valid
        test = test / total if isinstance(test, int) and not isinstance(test, bool) else test
    by_class: dict[Any, list[int]] = {}
    for i, k in enumerate(keys):
        by_class.setdefault(_hashable(k), []).append(i)
    gen = torch.Generator().manual_seed(seed)
    parts: dict[str, list[torch.Tensor]] = {"train": [], "valid": [], "test": []}
    for members in by_class.values():
        idx = torch.tensor(members)[torch.randperm(len(members), generator=gen)]
        m = len(members)
        n_valid = _as_count(valid, m, "valid") if m > 1 else 0
        n_test = _as_count(test, m, "test") if m > 2 else 0
        n_valid = min(n_valid, m - 1 - n_test) if m > 1 else 0
        parts["valid"].append(idx[:n_valid])
        parts["test"].append(idx[n_valid : n_valid + n_test])
        parts["train"].append(idx[n_valid + n_test :])
    cat = {
        k: torch.cat(v).sort().values if v else torch.zeros(0, dtype=torch.long)
        for k, v in parts.items()
    }
    splits = Splits(train=cat["train"], valid=cat["valid"], test=cat["test"])
    return splits.check(len(keys), required=_requested(valid=valid, test=test))


def group_split(
    groups: Sequence[Hashable], valid: Fraction = 0.1, test: Fraction = 0.0, *, seed: int = 0
) -> Splits:
    """Split so that all items of one group land in the same split.

    Use it when items that share a group must not be in two splits: the sentences of one
    source text, the windows of one file, several translations of one source sentence.
    Groups are assigned in a seeded random order until each split holds its share of items.

    Example:
        >>> s = group_split(["a", "a", "b", "b", "c", "c"], valid=2, seed=0)
        >>> s.sizes()
        {'train': 4, 'valid': 2, 'test': 0}
    """
    keys = [_hashable(g) for g in groups]
    n = len(keys)
    n_valid, n_test = _as_count(valid, n, "valid"), _as_count(test, n, "test")
    members: dict[Any, list[int]] = {}
    for i, k in enumerate(keys):
        members.setdefault(k, []).append(i)
    names = list(members)
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist()
    chosen: dict[str, list[int]] = {"valid": [], "test": [], "train": []}
    for gi in order:
        items = members[names[gi]]
        if len(chosen["test"]) < n_test:
            chosen["test"].extend(items)
        elif len(chosen["valid"]) < n_valid:
            chosen["valid"].extend(items)
        else:
            chosen["train"].extend(items)
    out = {k: torch.tensor(sorted(v), dtype=torch.long) for k, v in chosen.items()}
    splits = Splits(train=out["train"], valid=out["valid"], test=out["test"])
    return splits.check(n, required=_requested(valid=valid, test=test))


def split_by_column(
    values: Sequence[Any],
    *,
    valid: Any = "valid",
    test: Any = "test",
    train: Any = None,
) -> Splits:
    """Split by the value of a column: rows whose value equals ``valid`` validate, etc.

    Args:
        values: one value per item (e.g. ``df["fold"]``).
        valid, test: the value (or list of values) that marks each split.
        train: the value(s) of training rows; default: every other row.

    Raises:
        DataError: the training split is empty.

    Example:
        >>> split_by_column(["train", "valid", "train", "test"]).sizes()
        {'train': 2, 'valid': 1, 'test': 1}
    """

    def matcher(spec: Any) -> Callable[[Any], bool]:
        wanted = set(spec) if isinstance(spec, (list, tuple, set)) else {spec}
        return lambda v: v in wanted

    is_valid, is_test = matcher(valid), matcher(test)
    is_train = matcher(train) if train is not None else None
    out: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    for i, v in enumerate(values):
        v = v.item() if isinstance(v, torch.Tensor) else v
        if is_valid(v):
            out["valid"].append(i)
        elif is_test(v):
            out["test"].append(i)
        elif is_train is None or is_train(v):
            out["train"].append(i)
    splits = _from_lists(out)
    return splits.check(len(values))


def split_by_indices(
    n: int,
    *,
    valid: Sequence[int] = (),
    test: Sequence[int] = (),
    train: Sequence[int] | None = None,
) -> Splits:
    """Split by explicit index lists; training gets the rest unless ``train`` is given.

    Raises:
        DataError: an index out of range or listed in two splits.

    Example:
        >>> split_by_indices(5, valid=[0], test=[4]).train.tolist()
        [1, 2, 3]
    """
    v = torch.as_tensor(list(valid), dtype=torch.long)
    t = torch.as_tensor(list(test), dtype=torch.long)
    if train is None:
        keep = torch.ones(n, dtype=torch.bool)
        for idx, name in ((v, "valid"), (t, "test")):
            _check_range(idx, n, name)
            keep[idx] = False
        tr = keep.nonzero().flatten()
    else:
        tr = torch.as_tensor(list(train), dtype=torch.long)
    return Splits(train=tr, valid=v, test=t).check(n)


def split_by_predicate(
    items: Sequence[Any],
    *,
    valid: Callable[[Any], bool] | None = None,
    test: Callable[[Any], bool] | None = None,
) -> Splits:
    """Items for which ``test(item)`` is true test, then ``valid(item)`` validate; the rest train.

    Example:
        >>> split_by_predicate(range(10), valid=lambda i: i % 5 == 0).valid.tolist()
        [0, 5]
    """
    out: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    for i, item in enumerate(items):
        if test is not None and test(item):
            out["test"].append(i)
        elif valid is not None and valid(item):
            out["valid"].append(i)
        else:
            out["train"].append(i)
    return _from_lists(out).check(len(items))


def make_splits(
    spec: Any,
    n: int,
    *,
    labels: Sequence[Any] | None = None,
    groups: Sequence[Any] | None = None,
    columns: Mapping[str, Sequence[Any]] | None = None,
    items: Sequence[Any] | None = None,
    default: Any = "random",
    path: str = "split",
) -> Splits:
    """Build ``Splits`` from a spec (a name, a dict, or a ready ``Splits``).

    Args:
        spec: ``None`` (use ``default``), a name (``"random"``, ``"stratified"``,
            ``"group"``, ``"column"``, ``"indices"``, ``"predicate"``), a dict with `name`
            and the options of the matching function, or a ``Splits``.
        n: the number of items.
        labels: class labels (for ``stratified``).
        groups: group keys (for ``group``).
        columns: named columns (for ``column``; the spec names the column).
        items: the items handed to predicates.
        default: the split spec used when ``spec`` is None.
        path: where the spec sits, for messages (``dataset.split``).

    Raises:
        DataError: unknown split name or options, or a split that cannot be made.
    """
    if isinstance(spec, Splits):
        return spec.check(n)
    if spec is None:
        spec = default
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise DataError(
            f"at `{path}`: expected a split name or a dict with `name`. Received: {spec!r}"
        )
    opts = {k: v for k, v in spec.items() if k != "name"}
    name = spec["name"]
    try:
        if name == "random":
            return random_split(n, **opts)
        if name == "stratified":
            if labels is None:
                raise DataError("a stratified split needs class labels; this data has none.")
            return stratified_split(labels, **opts)
        if name == "group":
            return group_split(groups if groups is not None else list(range(n)), **opts)
        if name == "column":
            column = opts.pop("column", None)
            if columns is None or column not in columns:
                known = sorted(columns) if columns is not None else []
                raise DataError(f"split column {column!r} not found. Known columns: {known}")
            return split_by_column(list(columns[column]), **opts)
        if name == "indices":
            return split_by_indices(n, **opts)
        if name == "predicate":
            return split_by_predicate(items if items is not None else list(range(n)), **opts)
    except TypeError as exc:
        raise DataError(f"at `{path}`: bad options for the `{name}` split: {exc}") from exc
    except DataError as exc:
        raise DataError(f"at `{path}`: {exc}") from exc
    raise DataError(
        f"at `{path}`: unknown split `{name}`. Known splits: column, group, indices, predicate, "
        "random, stratified"
    )


def _from_lists(out: Mapping[str, list[int]]) -> Splits:
    def t(name: str) -> torch.Tensor:
        return torch.tensor(out[name], dtype=torch.long)

    return Splits(train=t("train"), valid=t("valid"), test=t("test"))


def _check_range(idx: torch.Tensor, n: int | None, name: str) -> None:
    if n is not None and len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise DataError(
            f"the `{name}` split holds index {int(idx.max()) if int(idx.max()) >= n else int(idx.min())}, "
            f"outside the {n} items there are."
        )


def check_no_shared_items(splits: Splits, n: int | None = None) -> None:
    """Raise DataError if an index is in two splits, twice in one, or out of range."""
    names, parts = [], []
    for name, idx in splits.items():
        _check_range(idx, n, name)
        names.append(name)
        parts.append(idx.long())
    if not parts:
        return
    every = torch.cat(parts)
    owner = torch.cat([torch.full((len(p),), i) for i, p in enumerate(parts)])
    values, counts = torch.unique(every, return_counts=True)
    if bool((counts > 1).any()):
        item = int(values[counts > 1][0])
        where = sorted({names[int(o)] for o in owner[every == item]})
        if len(where) == 1:
            raise DataError(f"the `{where[0]}` split lists item {item} twice.")
        raise DataError(
            f"item {item} is in both the `{where[0]}` and the `{where[1]}` split (leakage)."
        )


def _hashable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else tuple(value.flatten().tolist())
    if isinstance(value, list):
        return tuple(value)
    return value


def _row_keys(rows: torch.Tensor | Sequence[Any]) -> list[Any]:
    if isinstance(rows, torch.Tensor):
        flat = rows.reshape(len(rows), -1).contiguous()
        # hash raw bytes: exact, and far cheaper than tuples of Python ints for long rows
        data = flat.cpu().numpy()
        return [hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in data]
    return [_hashable(r) for r in rows]


def check_leakage(
    keys: Mapping[str, torch.Tensor | Sequence[Any]],
    *,
    against: str = "train",
    what: str = "item",
) -> None:
    """Raise DataError if an item of another split also appears in ``against``.

    Compares content, not indices: use it on source sentences (no test source sentence may
    be in training), file names, or rows of a tensor.

    Args:
        keys: split name -> that split's items (a tensor compares whole rows).
        against: the split the others must not share items with.
        what: what an item is, for the message ("source sentence").

    Raises:
        DataError: naming the split, how many items leak and one example.

    Example:
        >>> check_leakage({"train": ["a b", "c"], "test": ["d"]}, what="source sentence")
    """
    if against not in keys:
        return
    seen = set(_row_keys(keys[against]))
    for name, items in keys.items():
        if name == against or items is None:
            continue
        row_keys = _row_keys(items)
        shared = [i for i, k in enumerate(row_keys) if k in seen]
        if shared:
            example = items[shared[0]]
            if isinstance(example, torch.Tensor):
                example = example.tolist()
            raise DataError(
                f"{len(shared)} {what}(s) of the `{name}` split also appear in `{against}` "
                f"(leakage), e.g. {str(example)[:80]!r}."
            )
