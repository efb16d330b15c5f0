"""DataBundle: splits by name, state saved beside a model and read back."""

import numpy as np
import pandas as pd
import pytest
import torch

from nnblocks.data import (
    ClassificationTask,
    DataBundle,
    TensorData,
    from_dataframe,
    from_pairs,
    load_data_state,
)
from nnblocks.errors import DataError


def _data(n):
    return TensorData(torch.randn(n, 2), torch.zeros(n, dtype=torch.long))


def test_splits_sizes_and_lookup():
    bundle = DataBundle(
        train=_data(8), valid=_data(2), task=ClassificationTask(2), extra={"long": _data(3)}
    )
    assert bundle.sizes() == {"train": 8, "valid": 2, "long": 3}
    assert bundle.split("long") is bundle.extra["long"]
    assert bundle.model_args == {"num_classes": 2}
    with pytest.raises(DataError, match=r"no `test` split. Splits: \['long', 'train', 'valid'\]"):
        bundle.split("test")
    assert "classification" in repr(bundle)


def test_empty_splits_are_refused():
    with pytest.raises(DataError, match="non-empty `train`"):
        DataBundle(train=_data(0), valid=None, task=ClassificationTask(2))
    with pytest.raises(DataError, match="`valid` split of this dataset is empty"):
        DataBundle(train=_data(3), valid=_data(0), task=ClassificationTask(2))


def test_state_round_trip_keeps_tokenizers_and_fitted_transforms(tmp_path):
    pairs = from_pairs(
        [(f"a{i} b", f"c{i}") for i in range(30)], split={"name": "group", "valid": 5}
    )
    state = load_data_state(pairs.save_state(tmp_path / "seq"))
    src = state["tokenizers"]["src"]
    assert src.encode("a3 b") == pairs.tokenizers["src"].encode("a3 b")
    assert state["task"]["name"] == "seq2seq"

    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {"x": rng.normal(5, 2, 40), "c": rng.choice(["p", "q"], 40), "y": [0, 1] * 20}
    )
    table = from_dataframe(df, "y")
    state = load_data_state(table.save_state(tmp_path / "tab"))
    norm = state["transforms"]["x"]
    new = torch.tensor([[7.0]])
    assert torch.allclose(norm(new), table.transforms["x"](new))
    assert state["transforms"]["categorify"].categories == {"c": ["p", "q"]}


def test_load_data_state_missing(tmp_path):
    with pytest.raises(DataError, match="data.json"):
        load_data_state(tmp_path)


def test_from_splits_names_none_and_extra():
    made = {"train": _data(8), "valid": None, "test": _data(2), "long": _data(3), "empty": None}
    bundle = DataBundle.from_splits(made, task=ClassificationTask(2), info={"source": "x"})
    assert bundle.valid is None and bundle.test is made["test"]
    assert bundle.extra == {"long": made["long"]}  # a None split is no split
    assert bundle.sizes() == {"train": 8, "test": 2, "long": 3}
    assert bundle.info == {"source": "x"}
    with pytest.raises(DataError, match="non-empty `train` split"):
        DataBundle.from_splits({"train": None, "valid": _data(2)}, task=ClassificationTask(2))
