"""Splits: seeded, stratified, grouped, by column/indices/predicate, and leakage checks."""

import pytest
import torch

from nnblocks.data.splits import (
    Splits,
    check_leakage,
    group_split,
    make_splits,
    random_split,
    split_by_column,
    split_by_indices,
    split_by_predicate,
    stratified_split,
)
from nnblocks.errors import DataError


def _disjoint_cover(s: Splits, n: int) -> None:
    every = torch.cat([idx for _, idx in s.items()])
    assert len(every) == len(set(every.tolist())) == n  # no item in two splits, none lost


def test_random_split_is_seeded_disjoint_and_sized():
    a, b, c = (
        random_split(100, 0.1, 0.2, seed=1),
        random_split(100, 0.1, 0.2, seed=1),
        random_split(100, 0.1, 0.2, seed=2),
    )
    assert a.sizes() == {"train": 70, "valid": 10, "test": 20}
    assert torch.equal(a.test, b.test) and not torch.equal(a.test, c.test)
    _disjoint_cover(a, 100)


def test_counts_instead_of_fractions():
    assert random_split(50, valid=5, test=7).sizes() == {"train": 38, "valid": 5, "test": 7}


def test_stratified_keeps_class_shares():
    labels = [0] * 80 + [1] * 20
    s = stratified_split(labels, valid=0.25, seed=0)
    valid_labels = [labels[i] for i in s.valid.tolist()]
    assert valid_labels.count(0) == 20 and valid_labels.count(1) == 5
    _disjoint_cover(s, 100)


def test_group_split_keeps_groups_together():
    groups = [i // 3 for i in range(60)]  # 20 groups of 3
    s = group_split(groups, valid=0.2, test=0.2, seed=0)
    owner = {}
    for name, idx in s.items():
        for i in idx.tolist():
            assert owner.setdefault(groups[i], name) == name
    _disjoint_cover(s, 60)


def test_split_by_column_indices_and_predicate():
    s = split_by_column(["a", "v", "a", "t", "v"], valid="v", test="t")
    assert s.valid.tolist() == [1, 4] and s.test.tolist() == [3] and s.train.tolist() == [0, 2]
    s = split_by_indices(6, valid=[1], test=[2, 3])
    assert s.train.tolist() == [0, 4, 5]
    s = split_by_predicate(list(range(10)), valid=lambda i: i < 2, test=lambda i: i >= 8)
    assert s.sizes() == {"train": 6, "valid": 2, "test": 2}


def test_index_in_two_splits_is_leakage():
    with pytest.raises(DataError, match="item 2 is in both the `train` and the `valid` split"):
        split_by_indices(5, train=[0, 1, 2], valid=[2, 3])


def test_index_out_of_range():
    with pytest.raises(DataError, match="outside the 5 items"):
        split_by_indices(5, valid=[7])


def test_empty_requested_split_is_an_error():
    with pytest.raises(DataError, match="`valid` split is empty"):
        random_split(3, valid=0.1)  # 0.3 items round to none
    with pytest.raises(DataError, match="`train` split is empty"):
        split_by_column(["v", "v"], valid="v")


def test_bad_fraction():
    with pytest.raises(DataError, match="below 1"):
        random_split(10, valid=1.5)


def test_make_splits_from_specs():
    assert make_splits({"name": "random", "valid": 0.2, "seed": 3}, 10).sizes()["valid"] == 2
    assert make_splits(None, 20, labels=[0, 1] * 10, default="stratified").sizes()["valid"] == 2
    s = make_splits(
        {"name": "column", "column": "fold"}, 3, columns={"fold": ["train", "valid", "test"]}
    )
    assert s.sizes() == {"train": 1, "valid": 1, "test": 1}
    with pytest.raises(DataError, match="unknown split `randm`"):
        make_splits("randm", 10)
    with pytest.raises(DataError, match="split column 'nope' not found"):
        make_splits({"name": "column", "column": "nope"}, 3, columns={"fold": [1, 2, 3]})
    with pytest.raises(DataError, match="bad options"):
        make_splits({"name": "random", "vlaid": 0.1}, 10)


def test_check_leakage_by_content():
    check_leakage({"train": ["a", "b"], "test": ["c"]})
    with pytest.raises(
        DataError, match="1 source sentence.*`test` split also appear in `train`.*'b'"
    ):
        check_leakage({"train": ["a", "b"], "test": ["b", "c"]}, what="source sentence")
    rows = torch.tensor([[1, 2], [3, 4]])
    with pytest.raises(DataError, match="`valid` split"):
        check_leakage({"train": rows, "valid": torch.tensor([[3, 4]])})
